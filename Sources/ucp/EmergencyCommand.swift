import ArgumentParser
import Causal
import UCP

/// `ucp client emergency raise|clear|show`: the platform's emergency mode.
struct EmergencyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "emergency", abstract: "Raise, clear or show the platform's emergency mode.",
        subcommands: [Raise.self, Clear.self, Show.self])

    struct Raise: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Raise the emergency mode: brokers and executors start only jobs at LEVEL or above.")
        @OptionGroup var connection: ClientCommand.Connection
        @Argument(help: "MEDIUM, HIGH or CRITICAL (LOW holds nothing back).") var level: String
        @Option(help: "Why.") var reason = "raised with ucp"

        func run() async throws {
            let parsed: EmergencyLevel
            do {
                parsed = try EmergencyLevel(parsing: level)
            } catch {
                throw ValidationError("\(error)")
            }
            let client = try connection.client()
            defer { Task { await client.shutdown() } }
            print(describe(try await client.raiseEmergency(parsed, reason: reason)))
        }
    }

    struct Clear: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Clear the emergency mode.")
        @OptionGroup var connection: ClientCommand.Connection
        @Option(help: "Why.") var reason = "cleared with ucp"

        func run() async throws {
            let client = try connection.client()
            defer { Task { await client.shutdown() } }
            print(describe(try await client.clearEmergency(reason: reason)))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the mode and the notices the broker applied.")
        @OptionGroup var connection: ClientCommand.Connection

        func run() async throws {
            let client = try connection.client()
            defer { Task { await client.shutdown() } }
            let view = try await client.emergency()
            print(view.current.map(describe) ?? "no emergency was ever raised")
            for notice in view.applied { print("  applied: " + describe(notice)) }
        }
    }
}

/// `HIGH raised by <broker> at {…}: flood` or `cleared by <broker> at {…}: receded`.
func describe(_ notice: EmergencyNotice) -> String {
    let what = notice.level.map { "\($0.name) raised" } ?? "cleared"
    return "\(what) by broker \(notice.origin) at \(notice.stamp): \(notice.reason)"
}
