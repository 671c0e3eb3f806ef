import CCausal
import Synchronization

/// What the C node's callbacks reach through their context pointer.
///
/// Retained once for the C node (released by its closed callback), and by the
/// `CausalNode`; so it outlives both.
///
/// `@unchecked Sendable`: `handle` is written once, before the node is shared and before the
/// closed callback can run; `callbacks` are read and emptied on the loop thread only;
/// `finalStatistics`, `finalClock` and `finalUnacked` are written on the loop thread before
/// `Gate.closed` is set and read only by threads that saw that bit; `closing` is a mutex,
/// `port` atomic, the signals are Sendable.
final class NodeContext: @unchecked Sendable {
    struct Closing {
        var closed = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    let gate = Gate()
    let closing = Mutex(Closing())
    let port = Atomic<Int>(0)
    /// Signalled by the C `room` callback: the send window has room again.
    let room = LoopSignal()
    /// Signalled by the C `acked` callback: every broadcast taken is acknowledged.
    let acked = LoopSignal()
    var handle: OpaquePointer? = nil
    var finalStatistics = NodeStatistics()
    var finalClock: VectorClock
    var finalUnacked: UInt64 = 0
    /// Behind pointers rather than in stored properties: read once per message on the
    /// loop thread, where a class property would pay a dynamic exclusivity check each time.
    /// Emptied at close to break cycles through the handler's captures. The handler has a
    /// pointer of its own, to an immutable box that it holds a reference to: the loop thread
    /// calls it with neither reference counting, nor a reabstraction thunk, nor metadata of
    /// the generic stream types.
    private let handler: UnsafeMutablePointer<Unmanaged<DeliverHandler>?>
    private let callbacks: UnsafeMutablePointer<Callbacks>

    typealias Handler = @Sendable (borrowing UnsafeNodeMessage) -> Void

    private final class DeliverHandler: Sendable {
        let body: Handler
        init(_ body: @escaping Handler) { self.body = body }
    }

    private struct Callbacks {
        var deliveries: AsyncStream<CausalMessage>.Continuation?
        var events: AsyncStream<NodeEvent>.Continuation?
    }

    init(
        onDeliver: (@Sendable (borrowing UnsafeNodeMessage) -> Void)?,
        deliveries: AsyncStream<CausalMessage>.Continuation?, events: AsyncStream<NodeEvent>.Continuation,
        width: Int
    ) {
        finalClock = VectorClock(width: width)
        handler = .allocate(capacity: 1)
        handler.initialize(to: onDeliver.map { Unmanaged.passRetained(DeliverHandler($0)) })
        callbacks = .allocate(capacity: 1)
        callbacks.initialize(to: Callbacks(deliveries: deliveries, events: events))
    }

    deinit {
        handler.pointee?.release()
        handler.deinitialize(count: 1)
        handler.deallocate()
        callbacks.deinitialize(count: 1)
        callbacks.deallocate()
    }

    /// Every delivery, on the loop thread. The handler is the hot path; the stream's code is
    /// kept out of line, so that this frame needs nothing of the stream's generic types.
    func deliver(_ m: UnsafePointer<cc_node_msg>) {
        if let box = handler.pointee {
            box._withUnsafeGuaranteedRef { $0.body(UnsafeNodeMessage(m)) }
        } else {
            yieldCopy(m)
        }
    }

    @inline(never)
    private func yieldCopy(_ m: UnsafePointer<cc_node_msg>) {
        callbacks.pointee.deliveries?.yield(UnsafeNodeMessage(m).copy())
    }

    func event(_ e: UnsafePointer<cc_node_event>) {
        if e.pointee.kind == CC_NODE_LISTENING { port.store(Int(e.pointee.port), ordering: .relaxed) }
        guard let events = callbacks.pointee.events, let event = NodeEvent(e.pointee) else { return }
        events.yield(event)
    }

    /// Own broadcasts not yet acknowledged by every peer (`cc_node_unacked`), those on their
    /// way into the log included; after the close, as many as there were then. Any thread.
    func unacked() -> UInt64 {
        guard gate.enter(unless: Gate.closed) else { return finalUnacked }
        defer { gate.leave() }
        return cc_node_unacked(handle)
    }

    /// The delivered clock. Loop thread only, while the C node is open.
    func readClock() -> VectorClock {
        guard let handle else { return finalClock }
        var clock = VectorClock(width: max(finalClock.width, 1))
        while true {
            let width = clock.withUnsafeMutableBufferPointer { cc_node_clock(handle, $0.baseAddress, $0.count) }
            if width <= clock.width {
                clock.width = width
                return clock
            }
            clock.width = width  // the group grew past our guess: read again
        }
    }

    /// The closed callback: the C node is freed once this returns.
    func finishClosing() {
        if let handle {
            var stats = cc_node_stats()
            cc_node_stats_get(handle, &stats)
            finalStatistics = NodeStatistics(stats)
            finalClock = readClock()
            finalUnacked = cc_node_unacked(handle)
        }
        gate.set(Gate.closing | Gate.closed)
        gate.drain()  // threads inside finish their (refused) calls before the memory goes
        room.close()
        acked.close()
        callbacks.pointee.deliveries?.finish()
        callbacks.pointee.events?.finish()
        let waiters = closing.withLock { state in
            state.closed = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
        // Releasing the handler may release the last reference to the node or the loop.
        let box = handler.pointee
        handler.pointee = nil
        box?.release()
        callbacks.pointee = Callbacks()
    }
}
