import Causal
import Testing

@Suite("CausalDelivery")
struct CausalDeliveryTests {
    private func message(_ sender: Int, _ clock: VectorClock, _ level: EmergencyLevel = .low, kind: UInt32 = 0)
        -> CausalMessage
    {
        CausalMessage(sender: sender, clock: clock, level: level, kind: kind)
    }

    /// Offers a shuffled history with duplicates in random batches; before each `next()`
    /// works out on its own which held messages are deliverable, and checks that the engine
    /// returns one of them with the highest level among them.
    @Test(
        "random histories of 8 nodes deliver causally, most urgent first, exactly once",
        .timeLimit(.minutes(1)), arguments: [1, 7, 42, 2026, 65_537] as [UInt64])
    func randomHistories(seed: UInt64) throws {
        let history = CausalHistory(nodes: 8, messages: 400, seed: seed)
        let (arrivals, duplicates) = history.arrivals(duplicateRate: 0.2, seed: seed ^ 0x5eed)
        var random = HistoryRandom(seed: seed &* 31)
        var engine = try CausalDelivery(width: 8)
        var held: [Int: CausalMessage] = [:]
        var delivered: [CausalMessage] = []
        var duplicatesSeen = 0
        var index = 0
        while index < arrivals.count {
            let batch = Int.random(in: 1...24, using: &random)
            for message in arrivals[index..<min(index + batch, arrivals.count)] {
                switch try engine.offer(message) {
                case .accepted: held[Int(message.kind)] = message
                case .duplicate: duplicatesSeen += 1
                }
            }
            index += batch
            #expect(engine.pendingCount == held.count)
            while true {
                let local = engine.clock
                let ready = held.values.filter { CausalHistory.isDeliverable($0, at: local) }
                guard let next = engine.next() else {
                    #expect(ready.isEmpty, "nothing delivered although \(ready.count) messages are deliverable")
                    break
                }
                #expect(ready.contains(next), "delivered \(next.kind) which is not deliverable at \(local)")
                #expect(next.level == ready.map(\.level).max(), "a less urgent message went first")
                held[Int(next.kind)] = nil
                delivered.append(next)
            }
        }
        #expect(history.violations(of: delivered) == [])
        #expect(engine.pendingCount == 0)
        #expect(engine.next() == nil)
        #expect(engine.clock == VectorClock(history.sentPerSender))
        #expect(duplicatesSeen == duplicates)
        let statistics = engine.statistics
        #expect(statistics.offered == UInt64(arrivals.count))
        #expect(statistics.delivered == UInt64(history.messages.count))
        #expect(statistics.duplicates == UInt64(duplicates))
        #expect(statistics.rejected == 0)
        #expect(statistics.heldBack > 0)
    }

    @Test("deliverable() drains in causal order", .timeLimit(.minutes(1)))
    func drain() throws {
        let history = CausalHistory(nodes: 8, messages: 200, seed: 99)
        var engine = try CausalDelivery(width: 8)
        var delivered: [CausalMessage] = []
        for message in history.messages.reversed() { try engine.offer(message) }
        delivered = engine.deliverable()
        #expect(history.violations(of: delivered) == [])
        #expect(engine.deliverable().isEmpty)
        #expect(engine.pendingCount == 0)
    }

    @Test("an emergency goes first among deliverable messages, FIFO within a level", .timeLimit(.minutes(1)))
    func emergencyFirst() throws {
        var engine = try CausalDelivery(width: 3)
        let a = message(0, [1, 0, 0], .low, kind: 1)
        let b = message(2, [0, 0, 1], .low, kind: 2)
        let c = message(1, [0, 1, 0], .critical, kind: 3)
        let d = message(2, [0, 0, 2], .medium, kind: 4)
        for m in [a, b, c, d] { #expect(try engine.offer(m) == .accepted) }
        // b before d (same sender), c first (critical), then FIFO among lows, d after b.
        #expect(engine.deliverable().map(\.kind) == [3, 1, 2, 4])
        #expect(engine.statistics.overtakes >= 1)
    }

    @Test("an emergency with a missing predecessor waits for it", .timeLimit(.minutes(1)))
    func emergencyWaitsForPredecessor() throws {
        var engine = try CausalDelivery(width: 3)
        let predecessor = message(0, [1, 0, 0], .low, kind: 1)
        let emergency = message(1, [1, 1, 0], .critical, kind: 2)
        let other = message(2, [0, 0, 1], .low, kind: 3)
        #expect(try engine.offer(emergency) == .accepted)
        #expect(try engine.offer(other) == .accepted)
        #expect(engine.next()?.kind == 3)
        #expect(engine.next() == nil)
        #expect(engine.pendingCount == 1)
        #expect(try engine.offer(predecessor) == .accepted)
        #expect(engine.deliverable().map(\.kind) == [1, 2])
        #expect(engine.statistics.heldBack == 1)
    }

    /// Each case runs on an engine (width 4, window 4, capacity 2) that has delivered
    /// [1,0,0,0] and holds two messages from sender 1 waiting for its first one.
    static let badOffers: [(String, CausalMessage, CausalDeliveryError.Reason)] = [
        ("clock wider than the group", CausalMessage(sender: 0, clock: [2, 0, 0, 0, 1]), .width),
        ("sender outside the group", CausalMessage(sender: 4, clock: [2, 0, 0, 0]), .sender),
        ("sender outside its clock", CausalMessage(sender: 3, clock: [1, 0]), .sender),
        ("sequence 0", CausalMessage(sender: 2, clock: [1, 0, 0, 0]), .invalid),
        ("ahead of the window", CausalMessage(sender: 0, clock: [6, 0, 0, 0]), .ahead),
        ("pending set full", CausalMessage(sender: 2, clock: [1, 0, 1, 0]), .full),
        ("pending set full, even for the missing predecessor", CausalMessage(sender: 1, clock: [0, 1, 0, 0]), .full),
    ]

    @Test(
        "bad input throws the right reason and changes nothing", .timeLimit(.minutes(1)),
        arguments: badOffers.indices)
    func badOffer(case index: Int) throws {
        let (_, bad, reason) = Self.badOffers[index]
        var engine = try CausalDelivery(width: 4, window: 4, capacity: 2)
        try engine.offer(message(0, [1, 0, 0, 0]))
        #expect(engine.next() != nil)
        #expect(try engine.offer(message(1, [0, 2, 0, 0])) == .accepted)
        #expect(try engine.offer(message(1, [1, 3, 0, 0])) == .accepted)
        let clock = engine.clock
        let pending = engine.pendingCount
        let before = engine.statistics

        let error = #expect(throws: CausalDeliveryError.self) { try engine.offer(bad) }
        #expect(error?.reason == reason)
        #expect(error?.sender == bad.sender)
        #expect(error?.sequence == bad.sequence)
        #expect(error.map { !$0.description.isEmpty && $0.description.contains($0.message) } == true)

        #expect(engine.clock == clock)
        #expect(engine.pendingCount == pending)
        #expect(engine.next() == nil)
        var expected = before
        expected.offered += 1
        expected.rejected += 1
        #expect(engine.statistics == expected)
    }

    @Test("duplicates of delivered and of pending messages are dropped, not thrown", .timeLimit(.minutes(1)))
    func duplicates() throws {
        var engine = try CausalDelivery(width: 2)
        try engine.offer(message(0, [1, 0]))
        _ = engine.deliverable()
        try engine.offer(message(1, [0, 2]))
        #expect(try engine.offer(message(0, [1, 0])) == .duplicate)
        #expect(try engine.offer(message(1, [0, 2])) == .duplicate)
        #expect(engine.pendingCount == 1)
        #expect(engine.clock == [1, 0])
        #expect(engine.statistics.duplicates == 2)
    }

    @Test("init refuses a width, window or capacity out of range", .timeLimit(.minutes(1)))
    func badInit() {
        for (width, window, capacity) in [(0, 16, 16), (-1, 16, 16), (4, -1, 16), (4, 16, 0), (4, 16, -5)] {
            let error = #expect(throws: CausalDeliveryError.self) {
                _ = try CausalDelivery(width: width, window: window, capacity: capacity)
            }
            #expect(error?.reason == .invalid)
        }
    }

    @Test("grow keeps pending messages and the clock; narrowing throws and changes nothing", .timeLimit(.minutes(1)))
    func grow() throws {
        var engine = try CausalDelivery(width: 2)
        try engine.offer(message(1, [0, 1]))
        #expect(engine.next()?.clock == [0, 1])
        try engine.offer(message(0, [2, 1], kind: 2))
        #expect(engine.pendingCount == 1)

        let error = #expect(throws: CausalDeliveryError.self) { try engine.grow(to: 1) }
        #expect(error?.reason == .width)
        #expect(engine.width == 2)

        try engine.grow(to: 4)
        #expect(engine.width == 4)
        #expect(engine.clock == VectorClock([0, 1, 0, 0]))
        #expect(engine.clock.width == 4)
        #expect(engine.pendingCount == 1)
        try engine.grow(to: 4)

        // A new member's message that depends on the held one, then the gap is filled
        // with a message of the old width.
        try engine.offer(message(3, [2, 1, 0, 1], kind: 3))
        #expect(engine.next() == nil)
        try engine.offer(message(0, [1, 0], kind: 1))
        #expect(engine.deliverable().map(\.kind) == [1, 2, 3])
        #expect(engine.clock == [2, 1, 0, 1])
    }

    @Test("send stamps the clock, counts as delivered and unblocks messages that wait for it", .timeLimit(.minutes(1)))
    func send() throws {
        var engine = try CausalDelivery(width: 3)
        try engine.offer(message(2, [0, 1, 1], kind: 1))  // waits for our first send
        #expect(engine.next() == nil)

        let sent = engine.send(from: 1, level: .high, kind: 9, payload: [1, 2])
        #expect(sent.sender == 1)
        #expect(sent.clock == [0, 1, 0])
        #expect(sent.sequence == 1)
        #expect(sent.level == .high)
        #expect(sent.kind == 9)
        #expect(sent.payload == [1, 2])
        #expect(engine.next()?.kind == 1)
        #expect(engine.clock == [0, 1, 1])
        #expect(engine.statistics.delivered == 2)

        // Our own message coming back is a duplicate; one claiming a send we never made is refused.
        #expect(try engine.offer(sent) == .duplicate)
        let error = #expect(throws: CausalDeliveryError.self) { try engine.offer(message(1, [0, 2, 0])) }
        #expect(error?.reason == .sender)
        #expect(error?.sequence == 2)
        #expect(engine.pendingCount == 0)

        #expect(engine.send(from: 1).clock == [0, 2, 1])
    }

    @Test("errors describe the message and the C reason", .timeLimit(.minutes(1)))
    func errorDescription() {
        let error = CausalDeliveryError(.ahead, sender: 3, sequence: 77)
        #expect(error.description == "message 77 from sender 3 refused: sequence beyond the delivery window")
        #expect(CausalDeliveryError(.closed).description == "closed")
        #expect(CausalDeliveryError(code: -999).reason == .unknown)
    }
}
