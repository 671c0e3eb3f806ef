import Testing
import UCP

@Suite("The failure detector's rule, without time or sockets")
struct FailureDetectorTests {
    static let detector = FailureDetector(suspectAfter: .seconds(2), failAfter: .seconds(5), startedAt: 100)

    @Test(
        "active, then suspected after suspectAfter, then failed after failAfter (silence counted from the start)",
        arguments: [
            (lastHeard: 100.0, now: 100.0, expected: NodeLiveness.active),
            (lastHeard: 100.0, now: 102.0, expected: .active),
            (lastHeard: 100.0, now: 102.5, expected: .suspected),
            (lastHeard: 100.0, now: 105.0, expected: .suspected),
            (lastHeard: 100.0, now: 105.1, expected: .failed),
            (lastHeard: 110.0, now: 111.0, expected: .active),
            (lastHeard: 110.0, now: 113.0, expected: .suspected),
            (lastHeard: 110.0, now: 116.0, expected: .failed),
            // Heard of before the broker started: it had no chance to beat while the broker was down.
            (lastHeard: 10.0, now: 101.0, expected: .active),
            (lastHeard: 10.0, now: 103.0, expected: .suspected),
            (lastHeard: 10.0, now: 106.0, expected: .failed),
            // A clock that went backwards is no silence.
            (lastHeard: 120.0, now: 119.0, expected: .active),
        ])
    func liveness(lastHeard: Double, now: Double, expected: NodeLiveness) {
        #expect(Self.detector.liveness(lastHeard: lastHeard, at: now) == expected)
    }

    @Test("silence is counted from the later of the last heartbeat and the start, never negative")
    func silence() {
        #expect(Self.detector.silence(lastHeard: 10, at: 103) == 3)
        #expect(Self.detector.silence(lastHeard: 101, at: 103) == 2)
        #expect(Self.detector.silence(lastHeard: 120, at: 103) == 0)
    }

    @Test("a suspectAfter longer than failAfter means no suspicion: active, then failed")
    func suspectAfterFail() {
        let detector = FailureDetector(suspectAfter: .seconds(9), failAfter: .seconds(3), startedAt: 0)
        #expect(detector.liveness(lastHeard: 0, at: 3) == .active)
        #expect(detector.liveness(lastHeard: 0, at: 3.01) == .failed)
    }

    @Test("the configuration suspects halfway between the heartbeat and failAfter unless told")
    func configuration() {
        #expect(BrokerConfiguration().suspectAfter == .seconds(95))
        #expect(BrokerConfiguration().failAfter == .seconds(130))
        let told = BrokerConfiguration(
            heartbeatInterval: .seconds(1), suspectAfter: .seconds(2), failAfter: .seconds(4))
        #expect(told.suspectAfter == .seconds(2))
        #expect(told.failAfter == .seconds(4))
    }
}
