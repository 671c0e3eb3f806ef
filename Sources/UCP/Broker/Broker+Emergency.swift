import Causal
import Foundation

extension Broker {
    /// Raises the emergency mode at `level` (nil clears it) platform-wide: issues a notice stamped
    /// with the broker's clock, applies it here, and sends it to every peer broker over the causal
    /// transport; each broker pushes the notices it applies to its executors. While the mode is
    /// raised at a level, brokers dispatch only queued jobs at that level or above and executors
    /// start only those.
    ///
    /// - Throws: ``BrokerError`` 400 for a reason longer than ``EmergencyNotice/maxReasonLength``,
    ///   503 when the notice could not be handed to the transport.
    public func setEmergency(level: EmergencyLevel?, reason: String) async throws(BrokerError) -> EmergencyNotice {
        guard reason.count <= EmergencyNotice.maxReasonLength else {
            throw BrokerError(.badRequest, "reason is longer than \(EmergencyNotice.maxReasonLength) characters")
        }
        let notice = EmergencyNotice(level: level, reason: reason, origin: nodeID, stamp: clock.event())
        await applyEmergency(notice)
        if let federation {
            do {
                try await federation.broadcast(notice)
            } catch {
                logger.error("emergency notice could not be sent to the peer brokers", metadata: ["error": "\(error)"])
                throw BrokerError(.unavailable, "emergency applied here but not sent to the peer brokers: \(error)")
            }
        }
        return notice
    }

    /// The emergency mode as this broker knows it.
    public var emergencyMode: EmergencyMode { emergency.withLock { $0 } }

    /// Applies `notice` (from this broker or a peer) when it supersedes the one in force: saves
    /// it, logs it, and starts pushing it to every live executor of this broker.
    func applyEmergency(_ notice: EmergencyNotice) async {
        let applied = emergency.withLock { $0.apply(notice) }
        guard applied else { return }
        do {
            try store.saveEmergencyNotice(notice)
        } catch {
            logger.error("cannot save the emergency notice: \(error)")
        }
        logger.notice(
            notice.level == nil ? "emergency cleared" : "emergency raised",
            metadata: [
                "level": "\(notice.level.map(\.name) ?? "none")", "reason": "\(notice.reason)",
                "origin": "\(notice.origin)", "stamp": "\(notice.stamp)",
            ])
        gauges.emergencyLevel.record(Int(notice.level?.rawValue ?? 0))
        markDirty()
        // In the background: a slow executor must not hold up the federation's deliveries. The
        // executors apply notices in causal order whatever order they arrive in.
        let executors = (try? liveExecutors(at: now())) ?? []
        for executor in executors {
            Task { await self.push(notice, to: executor) }
        }
    }

    /// Sends `notice` to `executor` (`PUT /emergency`); a failure is logged: the executor gets
    /// the notice in force again when it registers.
    func push(_ notice: EmergencyNotice, to executor: ExecutorEntry) async {
        do {
            try await client.call(.PUT, executor.record.address, "/emergency", json: notice)
        } catch {
            logger.warning(
                "executor did not take the emergency notice",
                metadata: ["executor": "\(executor.id.ucpString)", "error": "\(error)"])
        }
    }
}
