import Causal
import Foundation
import GRDB

/// Jobs handed to peer brokers, and the peers' executors that may take them.
extension BrokerStore {
    /// Gives queued job `id` to peer broker `peer` to dispatch (its owner from now on), logging
    /// `delegated`; false when the job is no longer queued here.
    func delegate(_ id: UUID, to peer: String, stamp: ClockStamp) throws(BrokerStoreError) -> Bool {
        try write { db in
            try db.execute(
                sql: "UPDATE jobs SET owner = ? WHERE id = ? AND state = 'queued' AND owner IS NULL",
                arguments: [peer, id.ucpString])
            guard db.changesCount > 0 else { return false }
            try Self.log(db, JobEvent(jobID: id, kind: .delegated, stamp: stamp))
            try Self.mergeClock(db, stamp.clock)
            return true
        }
    }

    /// The active executors of peer brokers, with their home broker's id.
    func peerExecutors() throws(BrokerStoreError) -> [(home: String, entry: ExecutorEntry)] {
        try read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT record, hosts, last_heartbeat, home FROM executors
                    WHERE state = 'active' AND home IS NOT NULL ORDER BY id
                    """
            ).map { row in
                (
                    row["home"],
                    ExecutorEntry(
                        record: try Self.decode(ExecutorRecord.self, row["record"]),
                        hosts: try Self.decode([String].self, row["hosts"]), lastHeartbeat: row["last_heartbeat"])
                )
            }
        }
    }
}
