import ArgumentParser
import CJemalloc

/// The `ucp` command-line tool: thin wiring over the `Causal` and `UCP` modules.
@main
struct UCPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ucp",
        abstract: "CausalUCP: vector-clock causal consistency for the Urban Compute Platform.",
        subcommands: []
    )
}
