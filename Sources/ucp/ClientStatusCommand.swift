import ArgumentParser
import Foundation
import UCP

extension ClientCommand {
    /// `ucp client status`: the broker's `GET /status`, as tables or as its JSON.
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the broker's executors (active, suspected, failed), jobs, ledger, peers and emergency.")
        @OptionGroup var connection: Connection
        @Flag(help: "Print the JSON the broker answers instead of tables.") var json = false

        func run() async throws {
            let client = try connection.client()
            defer { Task { await client.shutdown() } }
            if json {
                let answer = try await client.http.call(.GET, client.broker, "/status")
                FileHandle.standardOutput.write(Data(answer.body))
                print("")
                return
            }
            let status = try await client.http.decode(BrokerStatus.self, .GET, client.broker, "/status")
            print(StatusReport.render(status), terminator: "")
        }
    }
}
