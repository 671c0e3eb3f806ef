import CCausal
import Synchronization

/// A causal inbox on a `CausalLoop`: any thread posts messages, the loop thread delivers
/// them in causal order (the most urgent first among those deliverable together).
///
/// Posting copies the message into a pooled buffer and queues it without locks; the loop
/// thread offers it to a delivery engine (see `CausalDelivery`) and calls `onDeliver` for
/// each message that becomes deliverable. `broadcast` queues a local send: the loop stamps
/// it with this node's slot and the next clock, calls `onEmit` (to send it to the peers)
/// and then delivers it locally like any other message. Messages the engine refuses go to
/// `onReject` with the reason (duplicates included). In raw mode the causal check is
/// skipped and messages are delivered in arrival order: a baseline for the hand-off alone.
///
/// Back-pressure: the inbox holds `capacity` buffers, shared by queued messages, messages
/// waiting for a predecessor, and the one in a callback. When none is free, `post` and
/// `broadcast` throw `.full`; retry later or use `postWaiting(_:deadline:)`, which the loop
/// wakes when a buffer comes back. Because
/// waiting messages keep their buffers, size `capacity` for the largest gap a slow peer
/// may open, or the message filling the gap cannot get in.
///
/// Allocation: none per message. `post`, `broadcast`, the callbacks and the errors they
/// throw or report allocate nothing; callbacks receive a view of the pooled buffer.
///
/// Lifetime: the callbacks, and whatever they capture, live until the inbox has closed,
/// which happens on `close()`, when the inbox is released, or when its loop shuts down.
/// A callback may capture the inbox itself; closing breaks that cycle (then the inbox is
/// not released before `close()` or the loop's shutdown).
///
/// Thread safety: every member may be used from any thread; the callbacks run on the
/// loop thread, one at a time, and must not block it.
public final class CausalInbox: Sendable {
    /// The loop the inbox lives on.
    public let loop: CausalLoop
    /// The group's clock width.
    public let width: Int
    /// This node's slot, which `broadcast` stamps; nil when the inbox only receives.
    public let slot: Int?
    /// The payload bytes each buffer holds.
    public let maxPayload: Int
    /// The number of message buffers.
    public let capacity: Int
    private let context: InboxContext

    /// Opens an inbox on `loop`.
    ///
    /// - Parameters:
    ///   - loop: The loop whose thread runs the delivery engine and the callbacks.
    ///   - width: The group's clock width; at least 1.
    ///   - slot: This node's slot (`0..<width`), needed by `broadcast`; nil to only receive.
    ///   - capacity: Message buffers (and queue slots); at least 1.
    ///   - maxPayload: Bytes each buffer holds; a larger payload is refused with `.tooLarge`.
    ///   - window: How far ahead of what was delivered a sender's messages may be and still
    ///     wait (rounded up to a power of two); nil picks `capacity`.
    ///   - raw: When true, no causal check: messages are delivered in arrival order.
    ///   - onDeliver: Each message in delivery order; loop thread.
    ///   - onEmit: Each stamped local send, before it is delivered locally; loop thread.
    ///   - onReject: Each posted message the engine refused, with the reason; loop thread.
    /// - Throws: `.invalid`, `.memory`, `.system`, or `.closed` when the loop has stopped.
    public init(
        loop: CausalLoop, width: Int, slot: Int?, capacity: Int = 4096, maxPayload: Int = 4096, window: Int? = nil,
        raw: Bool = false,
        onDeliver: @escaping @Sendable (borrowing UnsafeInboxMessage) -> Void,
        onEmit: (@Sendable (borrowing UnsafeInboxMessage) -> Void)? = nil,
        onReject: (@Sendable (borrowing UnsafeInboxMessage, CausalDeliveryError) -> Void)? = nil
    ) throws(CausalDeliveryError) {
        guard width >= 1, width <= Int(UInt32.max), capacity >= 1, capacity <= Int(UInt32.max), maxPayload >= 0,
            maxPayload <= Int(UInt32.max), (window ?? 0) >= 0, (window ?? 0) <= Int(UInt32.max)
        else { throw CausalDeliveryError(.invalid) }
        if let slot, slot < 0 || slot >= width { throw CausalDeliveryError(.sender, sender: slot) }

        var config = cc_inbox_config()
        config.width = UInt32(width)
        config.`self` = slot.map(UInt32.init) ?? UInt32.max
        config.capacity = UInt32(capacity)
        config.max_payload = UInt32(maxPayload)
        config.window = UInt32(window ?? 0)
        config.pending = 0
        config.raw = raw ? 1 : 0

        let context = InboxContext(onDeliver: onDeliver, onEmit: onEmit, onReject: onReject)
        let ctx = Unmanaged.passRetained(context).toOpaque()
        var callbacks = cc_inbox_callbacks()
        callbacks.ctx = ctx
        callbacks.deliver = { ctx, m in
            Unmanaged<InboxContext>.fromOpaque(ctx!)._withUnsafeGuaranteedRef { $0.deliver(m!) }
        }
        if onEmit != nil {
            callbacks.emit = { ctx, m in
                Unmanaged<InboxContext>.fromOpaque(ctx!)._withUnsafeGuaranteedRef { $0.emit(m!) }
            }
        }
        if onReject != nil {
            callbacks.reject = { ctx, m, code in
                Unmanaged<InboxContext>.fromOpaque(ctx!)._withUnsafeGuaranteedRef { $0.reject(m!, code: code) }
            }
        }
        callbacks.closed = { ctx in
            let context = Unmanaged<InboxContext>.fromOpaque(ctx!)
            context._withUnsafeGuaranteedRef { $0.finishClosing() }
            context.release()  // the retain taken at open
        }
        callbacks.room = { ctx in
            Unmanaged<InboxContext>.fromOpaque(ctx!)._withUnsafeGuaranteedRef { $0.room.signal() }
        }

        var inbox: OpaquePointer?
        // The loop must not stop (and free itself) while cc_inbox_open uses it.
        guard loop.gate.enter(unless: Gate.closed) else {
            Unmanaged<InboxContext>.fromOpaque(ctx).release()
            throw CausalDeliveryError(.closed)
        }
        let rc = cc_inbox_open(loop.handle.pointer, &config, &callbacks, &inbox)
        // Before leaving the gate: the closed callback (at the earliest when the loop stops,
        // which waits for the gate) reads the handle.
        context.handle = inbox
        loop.gate.leave()
        guard Int(rc) == CC_OK, inbox != nil else {
            // A function that returns an error never calls its callbacks: the retain is ours.
            Unmanaged<InboxContext>.fromOpaque(ctx).release()
            throw CausalDeliveryError(code: rc)
        }
        self.context = context
        self.loop = loop
        self.width = width
        self.slot = slot
        self.maxPayload = maxPayload
        self.capacity = capacity
    }

    /// Closes the inbox unless it is closed already; the callbacks are released once the
    /// loop thread has finished closing it.
    deinit {
        requestClose()
    }

    // MARK: Posting

    /// Queues a message from a peer. Any thread; allocates nothing.
    ///
    /// The checks that need no engine state happen here; the rest (duplicate, ahead,
    /// invalid sequence, pending set full) happen on the loop thread and go to `onReject`.
    ///
    /// - Throws: `.full` when no buffer is free (back-pressure), `.closed` once `close()`
    ///   was called or the inbox closed, `.width` for a clock wider than the group,
    ///   `.sender` for a sender outside the group, `.tooLarge` for a payload over
    ///   `maxPayload`; the message then is not queued.
    public func post(_ message: CausalMessage) throws(CausalDeliveryError) {
        let rc = message.clock.withUnsafeBufferPointer { clock in
            message.payload.withUnsafeBytes { payload in
                submit(sender: message.sender, clock: clock, level: message.level, kind: message.kind, payload: payload)
            }
        }
        guard Int(rc) == CC_OK else {
            throw CausalDeliveryError(code: rc, sender: message.sender, sequence: message.sequence)
        }
    }

    /// Queues a message from a peer given by its parts: `post(_:)` without building a
    /// `CausalMessage`. Any thread; allocates nothing. Throws like `post(_:)`.
    public func post(
        sender: Int, clock: VectorClock, level: EmergencyLevel = .low, kind: UInt32 = 0,
        payload: UnsafeRawBufferPointer
    ) throws(CausalDeliveryError) {
        let rc = clock.withUnsafeBufferPointer { clock in
            submit(sender: sender, clock: clock, level: level, kind: kind, payload: payload)
        }
        guard Int(rc) == CC_OK else {
            throw CausalDeliveryError(code: rc, sender: sender, sequence: sender >= 0 ? clock[sender] : nil)
        }
    }

    /// Posts `message`, waiting while every buffer is in use until `deadline`. The wait ends
    /// when a buffer comes back (the C inbox's `room` callback resumes it), not on a timer;
    /// only the deadline has one. Any thread. Allocates only while it waits.
    ///
    /// - Throws: `.full` when no buffer came free by `deadline` or the task was cancelled
    ///   meanwhile; otherwise like `post(_:)` (`.closed` when the inbox closes while it waits).
    public func postWaiting(_ message: CausalMessage, deadline: ContinuousClock.Instant)
        async throws(CausalDeliveryError)
    {
        let room = context.room
        while true {
            // Before the try: a `room` after it ends the wait at once (see LoopSignal).
            let epoch = room.epoch
            do throws(CausalDeliveryError) {
                try post(message)
                return
            } catch let error where error.reason == .full {
                switch await room.wait(after: epoch, until: deadline) {
                case .signalled, .closed: continue  // try again; a closed inbox throws .closed
                case .timedOut, .cancelled: throw error
                }
            }
        }
    }

    /// Queues a local send. The loop stamps it (sender = `slot`, the next clock), calls
    /// `onEmit`, then delivers it locally. Any thread; allocates nothing for a contiguous
    /// `payload` (an array, a buffer pointer).
    ///
    /// Requires an inbox opened with a `slot`.
    ///
    /// - Throws: `.full` when no buffer is free, `.closed` once closing, `.tooLarge` for a
    ///   payload over `maxPayload`.
    public func broadcast(
        payload: some Collection<UInt8>, level: EmergencyLevel = .low, kind: UInt32 = 0
    ) throws(CausalDeliveryError) {
        guard let slot else { preconditionFailure("broadcast needs an inbox opened with a slot") }
        let count = payload.count
        guard count <= maxPayload else { throw CausalDeliveryError(.tooLarge, sender: slot) }
        let rc = withBuffer(posting: false) { m in
            m.pointee.head.level = level.rawValue
            m.pointee.kind = kind
            m.pointee.length = UInt32(count)
            let destination = UnsafeMutableRawBufferPointer(start: m.pointee.payload, count: count)
            let copied: Void? = payload.withContiguousStorageIfAvailable { source in
                destination.copyMemory(from: UnsafeRawBufferPointer(source))
            }
            if copied == nil { _ = destination.initializeMemory(as: UInt8.self, from: payload) }
        }
        guard Int(rc) == CC_OK else { throw CausalDeliveryError(code: rc, sender: slot) }
    }

    // MARK: Reading

    /// A snapshot of the counters. Any thread; allocates nothing. After the inbox has
    /// closed, the counters as they were at the close.
    public var statistics: InboxStatistics {
        let context = self.context
        guard context.gate.enter(unless: Gate.closed) else { return context.finalStatistics }
        defer { context.gate.leave() }
        var stats = cc_inbox_stats()
        cc_inbox_stats_get(context.handle, &stats)
        return InboxStatistics(stats)
    }

    /// The inbox's local clock: what it delivered (and sent) from each slot. Hops to the
    /// loop thread and back; call from any thread but the loop's.
    ///
    /// - Throws: `.closed` when the inbox or its loop has closed, `.full` when the loop's
    ///   call queue is full.
    public func clock() async throws(CausalDeliveryError) -> VectorClock {
        let context = self.context
        let width = self.width
        let clock = try await loop.run { () -> VectorClock? in
            // On the loop thread, where the inbox closes: the flag cannot change under us.
            guard !context.gate.isSet(Gate.closed) else { return nil }
            var clock = VectorClock(width: width)
            clock.withUnsafeMutableBufferPointer { _ = cc_inbox_clock(context.handle, $0.baseAddress, $0.count) }
            return clock
        }
        guard let clock else { throw CausalDeliveryError(.closed) }
        return clock
    }

    // MARK: Closing

    /// Closes the inbox and waits until the loop thread has finished closing it: posts
    /// and broadcasts throw `.closed` from the call on, nothing more is delivered, and the
    /// callbacks are released. Any thread but the loop's; calling it again is harmless.
    public func close() async {
        requestClose()
        let context = self.context
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let closed = context.closing.withLock { state in
                if state.closed { return true }
                state.waiters.append(continuation)
                return false
            }
            if closed { continuation.resume() }
        }
    }

    /// Starts closing unless that has begun; does not wait.
    private func requestClose() {
        let context = self.context
        guard context.gate.set(Gate.closing) == 0 else { return }
        guard context.gate.enter(unless: Gate.closed) else { return }
        // CC_ECLOSED: the loop is stopping and closes the inbox itself.
        _ = cc_inbox_close(context.handle)
        context.gate.leave()
    }

    // MARK: Buffers

    /// Validates a peer's message, copies it into a buffer and posts it; returns a C code.
    private func submit(
        sender: Int, clock: UnsafeBufferPointer<UInt64>, level: EmergencyLevel, kind: UInt32,
        payload: UnsafeRawBufferPointer
    ) -> Int32 {
        guard sender >= 0, sender < width else { return Int32(CC_ESENDER) }
        guard clock.count <= width else { return Int32(CC_EWIDTH) }
        guard payload.count <= maxPayload else { return Int32(CC_ETOOBIG) }
        return withBuffer(posting: true) { m in
            m.pointee.head.sender = UInt32(sender)
            m.pointee.head.level = level.rawValue
            m.pointee.head.width = UInt32(clock.count)
            if let source = clock.baseAddress { m.pointee.clock.update(from: source, count: clock.count) }
            m.pointee.kind = kind
            m.pointee.length = UInt32(payload.count)
            if let source = payload.baseAddress {
                UnsafeMutableRawPointer(m.pointee.payload).copyMemory(from: source, byteCount: payload.count)
            }
        }
    }

    /// Acquires a buffer, lets `fill` write it, and posts (or sends) it; returns a C code.
    private func withBuffer(posting: Bool, _ fill: (UnsafeMutablePointer<cc_inbox_msg>) -> Void) -> Int32 {
        let context = self.context
        guard context.gate.enter(unless: Gate.closing | Gate.closed) else { return Int32(CC_ECLOSED) }
        defer { context.gate.leave() }
        guard let m = cc_inbox_acquire(context.handle) else {
            // C returns no buffer once the inbox is closing too; only this layer (on close())
            // and the loop (on shutdown, after setting its gate) start that.
            let closing = context.gate.isSet(Gate.closing | Gate.closed) || loop.gate.isSet(Gate.closed)
            return Int32(closing ? CC_ECLOSED : CC_EFULL)
        }
        fill(m)
        // On an error C releases the buffer itself.
        return posting ? cc_inbox_post(context.handle, m) : cc_inbox_send(context.handle, m)
    }
}

/// What the C inbox's callbacks reach through their context pointer.
///
/// Retained once for the C inbox (released by its closed callback), and by the
/// `CausalInbox`; so it outlives both the C inbox and the Swift one.
///
/// `@unchecked Sendable`: `handle` is written once, before the inbox is shared and before
/// the closed callback can run; `callbacks` are read and emptied on the loop thread only;
/// `finalStatistics` is written on the loop thread before `Gate.closed` is set and read
/// only by threads that saw that bit; `closing` is a mutex, `room` Sendable.
private final class InboxContext: @unchecked Sendable {
    struct Closing {
        var closed = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    let gate = Gate()
    let closing = Mutex(Closing())
    /// Signalled by the C `room` callback: buffers came back after an acquire found none.
    let room = LoopSignal()
    var handle: OpaquePointer? = nil
    var finalStatistics = InboxStatistics()
    /// The callbacks, behind a pointer rather than in stored properties: read once per
    /// message on the loop thread, and a class property would pay a dynamic exclusivity
    /// check each time. Loop thread only; emptied at close to break cycles through the
    /// callbacks' captures.
    private let callbacks: UnsafeMutablePointer<Callbacks>

    private struct Callbacks {
        var onDeliver: (@Sendable (borrowing UnsafeInboxMessage) -> Void)?
        var onEmit: (@Sendable (borrowing UnsafeInboxMessage) -> Void)?
        var onReject: (@Sendable (borrowing UnsafeInboxMessage, CausalDeliveryError) -> Void)?
    }

    init(
        onDeliver: @escaping @Sendable (borrowing UnsafeInboxMessage) -> Void,
        onEmit: (@Sendable (borrowing UnsafeInboxMessage) -> Void)?,
        onReject: (@Sendable (borrowing UnsafeInboxMessage, CausalDeliveryError) -> Void)?
    ) {
        callbacks = .allocate(capacity: 1)
        callbacks.initialize(to: Callbacks(onDeliver: onDeliver, onEmit: onEmit, onReject: onReject))
    }

    deinit {
        callbacks.deinitialize(count: 1)
        callbacks.deallocate()
    }

    func deliver(_ m: UnsafePointer<cc_inbox_msg>) {
        callbacks.pointee.onDeliver?(UnsafeInboxMessage(m))
    }

    func emit(_ m: UnsafePointer<cc_inbox_msg>) {
        callbacks.pointee.onEmit?(UnsafeInboxMessage(m))
    }

    func reject(_ m: UnsafePointer<cc_inbox_msg>, code: Int32) {
        guard let onReject = callbacks.pointee.onReject else { return }
        let message = UnsafeInboxMessage(m)
        let error = CausalDeliveryError(code: code, sender: message.sender, sequence: message.sequence)
        onReject(message, error)
    }

    /// The closed callback: the C inbox is freed once this returns.
    func finishClosing() {
        if let handle {
            var stats = cc_inbox_stats()
            cc_inbox_stats_get(handle, &stats)
            finalStatistics = InboxStatistics(stats)
        }
        gate.set(Gate.closing | Gate.closed)
        gate.drain()  // threads inside finish their (refused) calls before the memory goes
        room.close()
        let waiters = closing.withLock { state in
            state.closed = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
        // Releasing the callbacks may release the last reference to the inbox or the loop.
        callbacks.pointee = Callbacks()
    }
}
