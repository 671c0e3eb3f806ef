import Causal
import Dispatch
import Testing

/// What an inbox's callbacks saw, in the order the loop thread saw it.
enum InboxEvent: Sendable {
    case delivered(CausalMessage)
    case emitted(CausalMessage)
    case rejected(CausalMessage, CausalDeliveryError)
}

/// An inbox whose callbacks feed an `AsyncStream`, and a way to wait for its events.
struct ObservedInbox {
    let inbox: CausalInbox
    let events: AsyncStream<InboxEvent>

    init(
        loop: CausalLoop, width: Int, slot: Int? = nil, capacity: Int = 4096, maxPayload: Int = 64,
        window: Int? = nil, raw: Bool = false
    ) throws {
        let (events, sink) = AsyncStream<InboxEvent>.makeStream()
        self.events = events
        inbox = try CausalInbox(
            loop: loop, width: width, slot: slot, capacity: capacity, maxPayload: maxPayload, window: window, raw: raw,
            onDeliver: { sink.yield(.delivered($0.copy())) },
            onEmit: { sink.yield(.emitted($0.copy())) },
            onReject: { message, error in sink.yield(.rejected(message.copy(), error)) })
    }

    /// The next `count` events.
    func next(_ count: Int) async -> [InboxEvent] {
        var collected: [InboxEvent] = []
        guard count > 0 else { return collected }
        for await event in events {
            collected.append(event)
            if collected.count == count { break }
        }
        return collected
    }
}

extension InboxEvent {
    var delivered: CausalMessage? {
        if case .delivered(let message) = self { message } else { nil }
    }
    var emitted: CausalMessage? {
        if case .emitted(let message) = self { message } else { nil }
    }
    var rejection: CausalDeliveryError? {
        if case .rejected(_, let error) = self { error } else { nil }
    }
}

@Suite("CausalInbox")
struct CausalInboxTests {
    @Test(
        "4 threads posting a scrambled history: delivered causally, exactly once", .timeLimit(.minutes(1)),
        arguments: [3, 1999] as [UInt64])
    func concurrentPosters(seed: UInt64) async throws {
        let loop = try CausalLoop()
        defer { loop.shutdown() }
        let history = CausalHistory(nodes: 8, messages: 600, seed: seed)
        let (arrivals, duplicates) = history.arrivals(duplicateRate: 0.1, seed: seed + 1)
        let observed = try ObservedInbox(loop: loop, width: 8, capacity: 2048)
        let inbox = observed.inbox

        let parts = (0..<4).map { part in stride(from: part, to: arrivals.count, by: 4).map { arrivals[$0] } }
        let failures = LoopCounter()
        DispatchQueue.concurrentPerform(iterations: parts.count) { part in
            for message in parts[part] {
                do { try inbox.post(message) } catch { failures.add() }
            }
        }
        #expect(failures.value == 0)

        let events = await observed.next(arrivals.count)
        let delivered = events.compactMap(\.delivered)
        let rejections = events.compactMap(\.rejection)
        #expect(history.violations(of: delivered) == [])
        #expect(rejections.count == duplicates)
        #expect(rejections.allSatisfy { $0.reason == .duplicate })

        let clock = try await inbox.clock()  // also: the loop has finished the drain that delivered the last
        #expect(clock == VectorClock(history.sentPerSender))
        let statistics = inbox.statistics
        #expect(statistics.posted == UInt64(arrivals.count))
        #expect(statistics.delivered == UInt64(history.messages.count))
        #expect(statistics.duplicates == UInt64(duplicates))
        #expect(statistics.rejected == 0)
        #expect(statistics.pending == 0)
        #expect(statistics.sent == 0)
        #expect(statistics.heldBack > 0)
        #expect(statistics.wakeups >= 1)
        #expect(statistics.statisticsAddUp)
        await inbox.close()
    }

    @Test("messages that arrive together are delivered most urgent first", .timeLimit(.minutes(1)))
    func arrivingTogether() async throws {
        let loop = try CausalLoop()
        defer { loop.shutdown() }
        let observed = try ObservedInbox(loop: loop, width: 3)
        let release = try hold(loop)  // the loop thread is held, so the three posts are drained as one batch
        try observed.inbox.post(CausalMessage(sender: 0, clock: [1, 0, 0], level: .low))
        try observed.inbox.post(CausalMessage(sender: 1, clock: [0, 1, 0], level: .medium))
        try observed.inbox.post(CausalMessage(sender: 2, clock: [0, 0, 1], level: .critical))
        release.signal()
        let delivered = await observed.next(3).compactMap(\.delivered)
        #expect(delivered.map(\.sender) == [2, 1, 0])
        #expect(observed.inbox.statistics.overtakes == 2)
        await observed.inbox.close()
    }

    @Test("broadcast stamps the send, emits it, then delivers it locally", .timeLimit(.minutes(1)))
    func broadcast() async throws {
        let loop = try CausalLoop()
        defer { loop.shutdown() }
        let observed = try ObservedInbox(loop: loop, width: 3, slot: 1)
        let inbox = observed.inbox

        try inbox.broadcast(payload: [1, 2, 3], level: .high, kind: 7)
        let first = await observed.next(2)
        let stamped = CausalMessage(sender: 1, clock: [0, 1, 0], level: .high, kind: 7, payload: [1, 2, 3])
        #expect(first.map(\.emitted) == [stamped, nil])
        #expect(first.map(\.delivered) == [nil, stamped])

        // A peer's message that depends on ours, then a second send that follows it.
        try inbox.post(CausalMessage(sender: 0, clock: [1, 1, 0], payload: [9]))
        #expect(await observed.next(1).first?.delivered?.payload == [9])
        let bytes: [UInt8] = [4, 5]
        try bytes.withUnsafeBytes { try inbox.broadcast(payload: $0) }
        let second = await observed.next(2)
        #expect(second.first?.emitted?.clock == [1, 2, 0])
        #expect(second.first?.emitted?.payload == [4, 5])
        #expect(second.last?.delivered?.clock == [1, 2, 0])

        #expect(try await inbox.clock() == [1, 2, 0])
        let statistics = inbox.statistics
        #expect(statistics.sent == 2)
        #expect(statistics.delivered == 3)
        #expect(statistics.posted == 3)
        #expect(statistics.statisticsAddUp)
        await inbox.close()
    }

    @Test("raw mode delivers in arrival order without a causal check", .timeLimit(.minutes(1)))
    func raw() async throws {
        let loop = try CausalLoop()
        defer { loop.shutdown() }
        let observed = try ObservedInbox(loop: loop, width: 2, raw: true)
        let order: [VectorClock] = [[0, 3], [0, 1], [2, 0], [0, 2], [0, 1]]
        for (i, clock) in order.enumerated() {
            try observed.inbox.post(CausalMessage(sender: clock[0] > 0 ? 0 : 1, clock: clock, kind: UInt32(i)))
        }
        let events = await observed.next(order.count)
        #expect(events.compactMap(\.delivered).map(\.kind) == [0, 1, 2, 3, 4])
        #expect(events.compactMap(\.delivered).map(\.clock) == order)
        await observed.inbox.close()
    }

    @Test(
        "an emergency goes first among messages that become deliverable together, after its predecessor",
        .timeLimit(.minutes(1)))
    func emergencyFirst() async throws {
        let loop = try CausalLoop()
        defer { loop.shutdown() }
        let observed = try ObservedInbox(loop: loop, width: 3)
        let inbox = observed.inbox
        // Both wait for kind 1; the low one arrives first, the critical one is delivered first.
        try inbox.post(CausalMessage(sender: 1, clock: [1, 1, 0], level: .low, kind: 2))
        try inbox.post(CausalMessage(sender: 2, clock: [1, 0, 1], level: .critical, kind: 3))
        try inbox.post(CausalMessage(sender: 0, clock: [1, 0, 0], level: .low, kind: 1))
        let kinds = await observed.next(3).compactMap(\.delivered).map(\.kind)
        #expect(kinds == [1, 3, 2])
        _ = try await inbox.clock()
        #expect(inbox.statistics.overtakes == 1)
        #expect(inbox.statistics.heldBack == 2)
        await inbox.close()
    }

    @Test("post checks sender, width and payload size at once", .timeLimit(.minutes(1)))
    func postValidates() async throws {
        let loop = try CausalLoop()
        defer { loop.shutdown() }
        let observed = try ObservedInbox(loop: loop, width: 2, maxPayload: 4)
        let inbox = observed.inbox
        let cases: [(CausalMessage, CausalDeliveryError.Reason)] = [
            (CausalMessage(sender: 2, clock: [1, 0, 1]), .sender),
            (CausalMessage(sender: 0, clock: [1, 0, 0, 1]), .width),
            (CausalMessage(sender: 0, clock: [1, 0], payload: [1, 2, 3, 4, 5]), .tooLarge),
        ]
        for (message, reason) in cases {
            let error = #expect(throws: CausalDeliveryError.self) { try inbox.post(message) }
            #expect(error?.reason == reason)
            #expect(error?.sender == message.sender)
            #expect(error?.sequence == message.sequence)
        }
        let bytes: [UInt8] = [1, 2, 3, 4, 5, 6]
        #expect(throws: CausalDeliveryError(.sender, sender: -1, sequence: nil)) {
            try bytes.withUnsafeBytes { try inbox.post(sender: -1, clock: [1, 0], payload: $0) }
        }
        // What needs the engine's state is reported to onReject: sequence 0, then a duplicate.
        try inbox.post(CausalMessage(sender: 1, clock: [1, 0]))
        try bytes.withUnsafeBytes {
            try inbox.post(sender: 0, clock: [1, 0], payload: UnsafeRawBufferPointer(rebasing: $0[..<4]))
        }
        try inbox.post(CausalMessage(sender: 0, clock: [1, 0]))
        let events = await observed.next(3)
        #expect(events[0].rejection?.reason == .invalid)
        #expect(events[0].rejection?.sender == 1)
        // The last two may arrive in one batch, whose deliveries wait for the end of the batch: the
        // duplicate can then be refused before the original is handed out.
        #expect(events[1...].compactMap(\.delivered).map(\.payload) == [[1, 2, 3, 4]])
        #expect(events[1...].compactMap(\.rejection).map(\.reason) == [.duplicate])
        #expect(inbox.statistics.posted == 3)
        #expect(inbox.statistics.statisticsAddUp)
        await inbox.close()
    }

    @Test("post, broadcast and clock throw closed after close; statistics stay readable", .timeLimit(.minutes(1)))
    func closed() async throws {
        let loop = try CausalLoop()
        defer { loop.shutdown() }
        let observed = try ObservedInbox(loop: loop, width: 2, slot: 0)
        let inbox = observed.inbox
        try inbox.post(CausalMessage(sender: 1, clock: [0, 1]))
        _ = await observed.next(1)
        _ = try await inbox.clock()
        await inbox.close()
        await inbox.close()

        let error = #expect(throws: CausalDeliveryError.self) {
            try inbox.post(CausalMessage(sender: 1, clock: [0, 2]))
        }
        #expect(error?.reason == .closed)
        #expect(error?.sequence == 2)
        #expect(throws: CausalDeliveryError(.closed, sender: 0)) { try inbox.broadcast(payload: [1]) }
        await #expect(throws: CausalDeliveryError(.closed)) { try await inbox.clock() }
        #expect(inbox.statistics.delivered == 1)
        #expect(inbox.statistics.posted == 1)
    }

    @Test("shutting the loop down closes its inboxes", .timeLimit(.minutes(1)))
    func loopShutdownCloses() async throws {
        let loop = try CausalLoop()
        let observed = try ObservedInbox(loop: loop, width: 2)
        try observed.inbox.post(CausalMessage(sender: 0, clock: [1, 0]))
        _ = await observed.next(1)
        loop.shutdown()
        await observed.inbox.close()  // returns: the loop closed it already
        #expect(throws: CausalDeliveryError.self) { try observed.inbox.post(CausalMessage(sender: 0, clock: [2, 0])) }
        #expect(observed.inbox.statistics.delivered == 1)
    }

    @Test("releasing an inbox closes it and releases its callbacks", .timeLimit(.minutes(1)))
    func releaseCloses() async throws {
        let loop = try CausalLoop()
        defer { loop.shutdown() }
        let (released, sink) = AsyncStream<Void>.makeStream()
        do {
            let token = ReleaseToken { sink.yield() }
            let inbox = try CausalInbox(loop: loop, width: 2, slot: nil, onDeliver: { _ in _ = token })
            try inbox.post(CausalMessage(sender: 0, clock: [1, 0]))
        }
        for await _ in released { break }
    }

    @Test(
        "a full pool throws full; postWaiting waits for a free buffer until its deadline",
        .timeLimit(.minutes(1)))
    func fullPool() async throws {
        let loop = try CausalLoop()
        defer { loop.shutdown() }
        let observed = try ObservedInbox(loop: loop, width: 1, capacity: 4)
        let inbox = observed.inbox
        let release = try hold(loop)  // the loop thread is held: nothing goes back to the pool

        for sequence in 1...4 { try inbox.post(CausalMessage(sender: 0, clock: [UInt64(sequence)])) }
        let fifth = CausalMessage(sender: 0, clock: [5])
        let error = #expect(throws: CausalDeliveryError.self) { try inbox.post(fifth) }
        #expect(error?.reason == .full)
        #expect(error?.sender == 0)
        #expect(error?.sequence == 5)
        await #expect(throws: CausalDeliveryError(.full, sender: 0, sequence: 5)) {
            try await inbox.postWaiting(fifth, deadline: .now + .milliseconds(20))
        }

        let waiting = Task { try await inbox.postWaiting(fifth, deadline: .now + .seconds(30)) }
        release.signal()
        try await waiting.value
        let delivered = await observed.next(5).compactMap(\.delivered)
        #expect(delivered.map(\.sequence) == [1, 2, 3, 4, 5])
        await inbox.close()
    }

    @Test("postWaiting ends at once when cancelled, and when the inbox closes", .timeLimit(.minutes(1)))
    func waitingEnds() async throws {
        let loop = try CausalLoop()
        defer { loop.shutdown() }
        let observed = try ObservedInbox(loop: loop, width: 1, capacity: 2)
        let inbox = observed.inbox
        let release = try hold(loop)  // the loop thread is held: nothing goes back to the pool
        for sequence in 1...2 { try inbox.post(CausalMessage(sender: 0, clock: [UInt64(sequence)])) }
        let third = CausalMessage(sender: 0, clock: [3])
        let start = ContinuousClock.now
        let deadline = start + .seconds(30)

        let cancelled = Task { try await inbox.postWaiting(third, deadline: deadline) }
        cancelled.cancel()
        await #expect(throws: CausalDeliveryError(.full, sender: 0, sequence: 3)) { try await cancelled.value }

        let waiting = Task { try await inbox.postWaiting(third, deadline: deadline) }
        let closing = Task { await inbox.close() }
        release.signal()
        await closing.value
        // Either it got a buffer before the close began, or the close ended its wait.
        do {
            try await waiting.value
        } catch {
            #expect((error as? CausalDeliveryError)?.reason == .closed)
        }
        #expect(ContinuousClock.now - start < .seconds(20))
    }
}

/// Holds `loop`'s thread in a task of its own until the returned semaphore is signalled, so
/// that nothing the loop does (deliveries, buffers going back to the pool) happens meanwhile.
func hold(_ loop: CausalLoop) throws -> DispatchSemaphore {
    let started = DispatchSemaphore(value: 0)
    let release = DispatchSemaphore(value: 0)
    try loop.execute {
        started.signal()
        release.wait()
    }
    started.wait()
    return release
}

extension InboxStatistics {
    /// Every message taken from the queue (posts and local sends) was delivered, dropped
    /// as a duplicate, refused, or still waits.
    var statisticsAddUp: Bool {
        posted == delivered + duplicates + rejected + pending
    }
}

/// Calls `onRelease` when released.
final class ReleaseToken: Sendable {
    private let onRelease: @Sendable () -> Void
    init(_ onRelease: @escaping @Sendable () -> Void) { self.onRelease = onRelease }
    deinit { onRelease() }
}
