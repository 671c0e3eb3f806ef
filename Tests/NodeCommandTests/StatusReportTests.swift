import Causal
import Foundation
import Testing
import UCP

@testable import ucp

@Suite("ucp client status: the broker's status as tables")
struct StatusReportTests {
    static let status = BrokerStatus(
        broker: "b1", clock: ["b1": 7, "e1": 3],
        executors: [
            ExecutorStatus(
                id: "e1", address: Address(host: "127.0.0.1", port: 9001), state: .active, secondsSinceHeartbeat: 0.25,
                assignedJobs: 12),
            ExecutorStatus(
                id: "e2", address: Address(host: "127.0.0.1", port: 9002), state: .failed, secondsSinceHeartbeat: 31.5,
                assignedJobs: 0),
        ],
        jobs: ["waiting": 1, "queued": 3, "assigned": 12, "done": 40, "deleted": 2],
        queuedByLevel: ["LOW": 1, "MEDIUM": 0, "HIGH": 2, "CRITICAL": 0],
        assignedByLevel: ["LOW": 12, "MEDIUM": 0, "HIGH": 0, "CRITICAL": 0],
        ledger: LedgerCounts(accepted: 40, rejected: 5), redeployments: 4,
        peers: [BrokerPeerStatus(id: "b2", address: Address(host: "10.0.0.2", port: 8000), connected: true, delivered: ["b2": 9])],
        emergency: EmergencyNotice(
            level: .high, reason: "flood", origin: "b2", stamp: ClockStamp(clock: ["b2": 9])))

    @Test("executors, jobs by state and level, ledger, peers and emergency, columns aligned")
    func render() {
        let text = StatusReport.render(Self.status)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.first == "broker b1  clock {b1: 7, e1: 3}")
        #expect(lines.contains("  id  address         state   silent (s)  assigned"), "\(text)")
        #expect(lines.contains("  e1  127.0.0.1:9001  active         0.2        12")
            || lines.contains("  e1  127.0.0.1:9001  active         0.3        12"), "\(text)")
        #expect(lines.contains("  e2  127.0.0.1:9002  failed        31.5         0"), "\(text)")
        #expect(lines.contains("  state     count  LOW  MEDIUM  HIGH  CRITICAL"), "\(text)")
        #expect(lines.contains("  queued        3    1       0     2         0"), "\(text)")
        #expect(lines.contains("  assigned     12   12       0     0         0"), "\(text)")
        #expect(lines.contains("  done         40"), "\(text)")
        #expect(lines.contains("  accepted  rejected  redeployments"), "\(text)")
        #expect(lines.contains("        40         5              4"), "\(text)")
        #expect(lines.contains("  b2  10.0.0.2:8000  yes        {b2: 9}"), "\(text)")
        #expect(lines.contains("  HIGH from b2 at {b2: 9}: flood"), "\(text)")
        #expect(text.hasSuffix("\n"))
    }

    @Test("no executors, no peers, no emergency")
    func empty() {
        var status = Self.status
        status.executors = []
        status.peers = []
        status.emergency = nil
        let text = StatusReport.render(status)
        #expect(text.contains("executors\n  (none)\n"), "\(text)")
        #expect(text.contains("peers\n  (none)\n"), "\(text)")
        #expect(text.contains("emergency\n  none\n"), "\(text)")
    }
}
