import Foundation
import GRDB

/// The emergency notice in force, kept across restarts.
extension BrokerStore {
    /// Saves the emergency notice in force, so that a restarted broker keeps the mode.
    func saveEmergencyNotice(_ notice: EmergencyNotice) throws(BrokerStoreError) {
        try write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('emergency', ?)",
                arguments: [try Self.json(notice)])
        }
    }

    /// The emergency notice saved last, if any.
    func emergencyNotice() throws(BrokerStoreError) -> EmergencyNotice? {
        try read { db in
            try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'emergency'").map {
                try Self.decode(EmergencyNotice.self, $0)
            }
        }
    }
}
