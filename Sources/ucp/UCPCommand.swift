import ArgumentParser
import CJemalloc
import Foundation

/// The `ucp` command-line tool: thin wiring over the `Causal` and `UCP` modules.
@main
struct UCPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ucp",
        abstract: "CausalUCP: vector-clock causal consistency for the Urban Compute Platform.",
        subcommands: [
            BrokerCommand.self, ExecutorCommand.self, DatastoreCommand.self, ClientCommand.self, DemoCommand.self,
            JobsBenchCommand.self, NodeCommand.self,
        ]
    )
}
