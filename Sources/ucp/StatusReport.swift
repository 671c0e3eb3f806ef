import Causal
import Foundation
import UCP

/// A broker's ``BrokerStatus`` as readable text tables: executors; jobs by state and the queued
/// and assigned ones by emergency level; the ledger; peers; the emergency in force. Pure.
enum StatusReport {
    /// The whole report, one table after another, ending with a newline.
    static func render(_ status: BrokerStatus) -> String {
        var out = "broker \(status.broker)  clock \(clockText(status.clock))\n\n"
        out += "executors\n"
        if status.executors.isEmpty {
            out += "  (none)\n"
        } else {
            out += table(
                ["id", "address", "state", "silent (s)", "assigned"],
                status.executors.map {
                    [
                        $0.id, "\($0.address)", $0.state.rawValue, String(format: "%.1f", $0.secondsSinceHeartbeat),
                        String($0.assignedJobs),
                    ]
                }, rightAligned: [3, 4])
        }
        out += "\njobs\n"
        let levels = EmergencyLevel.allCases.map(\.name)
        out += table(
            ["state", "count"] + levels,
            JobState.allCases.map { state in
                let byLevel: [String: Int]? =
                    switch state {
                    case .queued: status.queuedByLevel
                    case .assigned: status.assignedByLevel
                    default: nil
                    }
                return [state.rawValue, String(status.jobs[state.rawValue] ?? 0)]
                    + levels.map { level in byLevel.map { String($0[level] ?? 0) } ?? "" }
            }, rightAligned: Set(1...(1 + levels.count)))
        out += "\nledger\n"
        out += table(
            ["accepted", "rejected", "redeployments"],
            [[String(status.ledger.accepted), String(status.ledger.rejected), String(status.redeployments)]],
            rightAligned: [0, 1, 2])
        out += "\npeers\n"
        if status.peers.isEmpty {
            out += "  (none)\n"
        } else {
            out += table(
                ["id", "address", "connected", "delivered"],
                status.peers.map { [$0.id, "\($0.address)", $0.connected ? "yes" : "no", clockText($0.delivered)] },
                rightAligned: [])
        }
        out += "\nemergency\n"
        if let notice = status.emergency, let level = notice.level {
            out += "  \(level.name) from \(notice.origin) at \(clockText(notice.stamp.clock)): \(notice.reason)\n"
        } else {
            out += "  none\n"
        }
        return out
    }

    /// A clock as `{a: 1, b: 2}`, entries by name.
    static func clockText(_ clock: [String: UInt64]) -> String {
        "{" + clock.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "}"
    }

    /// `rows` under `header`, columns padded to their widest cell, two spaces apart, indented by
    /// two; the columns in `rightAligned` aligned right.
    static func table(_ header: [String], _ rows: [[String]], rightAligned: Set<Int>) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0 }
        return all.map { row in
            let cells = header.indices.map { column -> String in
                let cell = row.indices.contains(column) ? row[column] : ""
                let pad = String(repeating: " ", count: widths[column] - cell.count)
                return rightAligned.contains(column) ? pad + cell : cell + pad
            }
            var line = "  " + cells.joined(separator: "  ")
            while line.last == " " { line.removeLast() }
            return line + "\n"
        }.joined()
    }
}
