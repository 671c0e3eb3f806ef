import CCausal

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A member of a causal broadcast group over TCP: every member delivers every message
/// exactly once, in causal order, its own broadcasts included (the C core's `cc_node`).
///
/// A node listens on `listen`, connects to its peers (of each pair, the lower slot dials),
/// proves with the cluster key that it belongs (and demands the same proof), and sends its
/// broadcasts to every peer stamped with its clock. Messages lost to a dropped connection
/// are resent after the reconnect; duplicates are dropped. With `Options.stateDirectory`
/// the node also survives its own restart, a crash included: what it had not handed over to
/// the application is delivered again (see `Options.confirmsDeliveries` and `confirm(_:)`).
///
/// Deliveries come as copies on `deliveries`, or, with an `onDeliver` handler, as views of
/// the receive buffer on the loop thread (no copy, no allocation). Connection and group
/// changes come on `events`.
///
/// Back-pressure: when `Options.sendWindow` broadcasts await acknowledgement, `broadcast`
/// throws `.full`; `broadcast(_:emergency:kind:waitingUntil:)` waits for room instead, and
/// `waitUntilAllAcknowledged(deadline:)` waits until nothing awaits acknowledgement. Both
/// are woken by the C node when acknowledgements arrive; neither polls.
///
/// Signals: libuv writes to sockets with `write(2)`, which raises SIGPIPE when a peer has
/// reset the connection. The first node started sets SIGPIPE to be ignored if the process
/// still has the default action (which would end the process), so that a lost peer costs
/// an error code instead; a handler the process installed itself is left alone.
///
/// Lifetime: the node runs until `close()`, until it is released, or until its loop shuts
/// down. A node made without a loop owns one, and shuts it down on `close()`. `onDeliver`,
/// and whatever it captures, lives until the node has closed; it may capture the node
/// (closing breaks that cycle).
///
/// Thread safety: every member may be used from any thread except `close()` and
/// `clock()`, which must not be called on the node's loop thread; `onDeliver` runs on the
/// loop thread, one message at a time, and must not block it.
public final class CausalNode: Sendable {
    /// The loop the node runs on.
    public let loop: CausalLoop
    /// This member's slot in the group's clocks.
    public let slot: Int
    /// The options the node was started with.
    public let options: Options
    /// Every message this node delivers, copied out of the receive buffer, in delivery
    /// order; finishes when the node closes. Buffered without bound: read it, or pass
    /// `onDeliver` instead (then this stream finishes at once and carries nothing).
    /// One consumer at a time.
    public let deliveries: AsyncStream<CausalMessage>
    /// Connection and group events as they happen; finishes when the node closes. Keeps
    /// the newest 1024 events that are not read. One consumer at a time.
    public let events: AsyncStream<NodeEvent>

    private let context: NodeContext
    /// True when the node made `loop` and shuts it down on close.
    private let ownsLoop: Bool

    /// Starts a member of a group.
    ///
    /// Returns once the node listens (`port` is then known); connections come up in the
    /// background and are reported on `events`. Any thread but the loop's.
    ///
    /// - Parameters:
    ///   - loop: The loop to run on; nil makes one for this node alone.
    ///   - slot: This member's slot, `0..<width`.
    ///   - width: The group's clock width now: larger than every known slot.
    ///   - listen: The address to listen on (an IPv4 or IPv6 literal) and port (0 picks one).
    ///   - peers: The other members known now; more may join through `addPeer(_:)`.
    ///   - key: The cluster key every member holds.
    ///   - options: Pacing, bounds and the state folder.
    ///   - onDeliver: If given, each delivered message as a view of the receive buffer, on
    ///     the loop thread, in delivery order; `deliveries` then stays empty.
    /// - Throws: `.invalid` (with a detail) for a bad argument, `.system` when the node
    ///   cannot listen or its state folder cannot be used, `.memory`, `.closed` when `loop`
    ///   has shut down.
    public init(
        loop: CausalLoop? = nil, slot: Int, width: Int, listen: (host: String, port: Int), peers: [Peer],
        key: ClusterKey, options: Options = .init(),
        onDeliver: (@Sendable (borrowing UnsafeNodeMessage) -> Void)? = nil
    ) throws(CausalNodeError) {
        guard width >= 1, width < Int(UInt32.max) else {
            throw CausalNodeError(.invalid, detail: "width \(width) out of range")
        }
        guard slot >= 0, slot < width else {
            throw CausalNodeError(.invalid, detail: "slot \(slot) outside the width \(width)")
        }
        guard width <= options.maxWidth else {
            throw CausalNodeError(.invalid, detail: "width \(width) past maxWidth \(options.maxWidth)")
        }
        guard (0...65535).contains(listen.port) else {
            throw CausalNodeError(.invalid, detail: "listen port \(listen.port) outside 0...65535")
        }
        try Peer.checkHost(listen.host, what: "listen address")
        _ = brokenPipesIgnored
        var cPeers: [cc_node_peer] = []
        var seen: Set<Int> = [slot]
        for peer in peers {
            guard peer.slot < width else {
                throw CausalNodeError(.invalid, detail: "peer slot \(peer.slot) outside the width \(width)")
            }
            guard seen.insert(peer.slot).inserted else {
                throw CausalNodeError(.invalid, detail: "slot \(peer.slot) appears twice (or is this node's own)")
            }
            cPeers.append(try peer.cPeer())
        }
        var config = cc_node_config()
        config.`self` = UInt32(slot)
        config.width = UInt32(width)
        config.listen_port = UInt16(listen.port)
        try options.apply(to: &config)
        withUnsafeMutableBytes(of: &config.key) { $0.copyBytes(from: key.bytes) }

        let ownsLoop = loop == nil
        let loop = try Self.loop(loop)
        let (deliveries, deliverySink) = AsyncStream<CausalMessage>.makeStream(bufferingPolicy: .unbounded)
        let (events, eventSink) = AsyncStream<NodeEvent>.makeStream(bufferingPolicy: .bufferingNewest(1024))
        if onDeliver != nil { deliverySink.finish() }
        let context = NodeContext(
            onDeliver: onDeliver, deliveries: onDeliver == nil ? deliverySink : nil, events: eventSink,
            width: width)
        let ctx = Unmanaged.passRetained(context).toOpaque()
        var callbacks = cc_node_callbacks()
        callbacks.ctx = ctx
        callbacks.deliver = { ctx, m in
            Unmanaged<NodeContext>.fromOpaque(ctx!)._withUnsafeGuaranteedRef { $0.deliver(m!) }
        }
        callbacks.event = { ctx, e in
            Unmanaged<NodeContext>.fromOpaque(ctx!)._withUnsafeGuaranteedRef { $0.event(e!) }
        }
        callbacks.closed = { ctx in
            let context = Unmanaged<NodeContext>.fromOpaque(ctx!)
            context._withUnsafeGuaranteedRef { $0.finishClosing() }
            context.release()  // the retain taken at start
        }
        callbacks.room = { ctx in
            Unmanaged<NodeContext>.fromOpaque(ctx!)._withUnsafeGuaranteedRef { $0.room.signal() }
        }
        callbacks.acked = { ctx in
            Unmanaged<NodeContext>.fromOpaque(ctx!)._withUnsafeGuaranteedRef { $0.acked.signal() }
        }

        var node: OpaquePointer?
        // The loop must not stop (and free itself) while cc_node_start uses it.
        guard loop.gate.enter(unless: Gate.closed) else {
            Unmanaged<NodeContext>.fromOpaque(ctx).release()
            throw CausalNodeError(.closed)
        }
        let rc = listen.host.withCString { host in
            withOptionalCString(options.stateDirectory) { stateDirectory in
                config.listen_host = host
                config.state_dir = stateDirectory
                return cPeers.withUnsafeBufferPointer { peers in
                    cc_node_start(loop.handle.pointer, &config, peers.baseAddress, peers.count, &callbacks, &node)
                }
            }
        }
        // Before leaving the gate: the closed callback (at the earliest when the loop stops,
        // which waits for the gate) reads the handle.
        context.handle = node
        loop.gate.leave()
        guard Int(rc) == CC_OK, let node else {
            // A function that returns an error never calls its callbacks: the retain is ours.
            Unmanaged<NodeContext>.fromOpaque(ctx).release()
            deliverySink.finish()
            eventSink.finish()
            let detail =
                switch Int(rc) {
                case CC_ESYS:
                    "cannot listen on \(Peer.address(host: listen.host, port: listen.port))"
                        + (options.stateDirectory.map { " or use the state folder \($0)" } ?? "")
                case CC_EINVAL: "the C core refused the configuration"
                default: nil as String?
                }
            throw CausalNodeError(code: rc, detail: detail)
        }
        context.port.store(Int(cc_node_port(node)), ordering: .relaxed)
        self.context = context
        self.loop = loop
        self.slot = slot
        self.options = options
        self.deliveries = deliveries
        self.events = events
        self.ownsLoop = ownsLoop
    }

    deinit {
        // An own loop goes with this node: its shutdown closes the node too.
        requestClose()
    }

    /// `loop`, or a new one.
    private static func loop(_ loop: CausalLoop?) throws(CausalNodeError) -> CausalLoop {
        if let loop { return loop }
        do {
            return try CausalLoop()
        } catch {
            throw CausalNodeError(code: error.code, detail: "cannot start a loop")
        }
    }

    // MARK: Sending

    /// Broadcasts `payload` to the group: every member, this one included, delivers it
    /// once, after everything this node delivered before the call. Any thread; allocates
    /// nothing for a contiguous `payload` (an array, a buffer pointer).
    ///
    /// - Throws: `.full` while `Options.sendWindow` broadcasts await acknowledgement (retry
    ///   later), `.tooLarge` for a payload over `Options.maxPayload`, `.closed` once closing.
    public func broadcast(
        _ payload: some Collection<UInt8>, emergency: EmergencyLevel = .low, kind: UInt32 = 0
    ) throws(CausalNodeError) {
        let count = payload.count
        guard count <= options.maxPayload else { throw CausalNodeError(.tooLarge) }
        let rc =
            payload.withContiguousStorageIfAvailable { bytes in
                send(UnsafeRawBufferPointer(bytes), level: emergency, kind: kind)
            }
            ?? Array(payload).withUnsafeBytes { bytes in send(bytes, level: emergency, kind: kind) }
        guard Int(rc) == CC_OK else {
            throw CausalNodeError(code: rc)
        }
    }

    /// Broadcasts the bytes `payload` points at, as `broadcast(_:emergency:kind:)` does; the
    /// bytes are copied before the call returns. For a caller that already holds a buffer,
    /// this overload is not generic, so a call from another module does not go through the
    /// `Collection` witnesses for every message. Any thread; allocates nothing.
    ///
    /// - Throws: as `broadcast(_:emergency:kind:)`.
    public func broadcast(
        _ payload: UnsafeRawBufferPointer, emergency: EmergencyLevel = .low, kind: UInt32 = 0
    ) throws(CausalNodeError) {
        guard payload.count <= options.maxPayload else { throw CausalNodeError(.tooLarge) }
        let rc = send(payload, level: emergency, kind: kind)
        guard Int(rc) == CC_OK else {
            throw CausalNodeError(code: rc)
        }
    }

    /// Broadcasts `payload`, waiting while the send window is full until `deadline`. The
    /// wait ends when acknowledgements make room (the C node's `room` callback resumes it),
    /// not on a timer; only the deadline has one. Any thread; allocates only while it waits.
    ///
    /// - Throws: `.full` when no room came free by `deadline` or the task was cancelled
    ///   meanwhile; otherwise like `broadcast(_:emergency:kind:)` (`.closed` when the node
    ///   closes while it waits).
    public func broadcast(
        _ payload: some Collection<UInt8>, emergency: EmergencyLevel = .low, kind: UInt32 = 0,
        waitingUntil deadline: ContinuousClock.Instant
    ) async throws(CausalNodeError) {
        let room = context.room
        while true {
            // Before the try: a `room` after it ends the wait at once (see LoopSignal).
            let epoch = room.epoch
            do throws(CausalNodeError) {
                try broadcast(payload, emergency: emergency, kind: kind)
                return
            } catch let error where error.reason == .full {
                switch await room.wait(after: epoch, until: deadline) {
                case .signalled, .closed: continue  // try again; a closed node throws .closed
                case .timedOut, .cancelled: throw error
                }
            }
        }
    }

    /// Waits until every broadcast this node made so far has been acknowledged by every peer
    /// (with a state folder: also handed over here and written), or until `deadline`. For a
    /// drain before `close()`. Woken by the C node's `acked` callback when its log empties,
    /// not by a timer; only the deadline has one. Any thread; allocates only while it waits.
    ///
    /// Broadcasts made while it waits count too, so a sender that never pauses keeps it
    /// waiting until the deadline.
    ///
    /// - Returns: true when nothing awaits acknowledgement; false at the deadline, when the
    ///   task was cancelled, or when the node closed with broadcasts unacknowledged (with a
    ///   state folder they are kept and resent after a restart).
    @discardableResult
    public func waitUntilAllAcknowledged(deadline: ContinuousClock.Instant) async -> Bool {
        let context = self.context
        while true {
            let epoch = context.acked.epoch  // before the look: see LoopSignal
            if context.unacked() == 0 { return true }
            switch await context.acked.wait(after: epoch, until: deadline) {
            case .signalled: continue
            case .closed: return context.unacked() == 0
            case .timedOut, .cancelled: return false
            }
        }
    }

    /// Calls C with the gate held; returns a C code.
    private func send(_ payload: UnsafeRawBufferPointer, level: EmergencyLevel, kind: UInt32) -> Int32 {
        let context = self.context
        guard context.gate.enter(unless: Gate.closing | Gate.closed) else { return Int32(CC_ECLOSED) }
        defer { context.gate.leave() }
        return cc_node_broadcast(context.handle, payload.baseAddress, payload.count, level.rawValue, kind)
    }

    // MARK: Hand-off

    /// Tells the node that the application has handled `message`, a delivery, and everything
    /// delivered before it, so that a restart from the state folder need not deliver them again.
    /// For a node started with `Options.confirmsDeliveries`; call it after handling each
    /// message, in delivery order. Any thread; allocates nothing. Cost: O(width) and a lock.
    ///
    /// The node records the entrywise maximum of the clocks confirmed (so a message and its
    /// causal past), writes it to the state folder and acknowledges it to the peers soon after.
    /// What was delivered but not confirmed when the process ends is delivered again after the
    /// restart, and so is what was confirmed after the last state write: at least once.
    ///
    /// - Throws: `.invalid` when the node was started without `confirmsDeliveries`, `.closed`
    ///   once closing (the state written at the close holds what was confirmed before).
    public func confirm(_ message: CausalMessage) throws(CausalNodeError) {
        let context = self.context
        guard context.gate.enter(unless: Gate.closing | Gate.closed) else { throw CausalNodeError(.closed) }
        let rc = message.clock.withUnsafeBufferPointer { clock in
            cc_node_confirm(context.handle, clock.baseAddress, clock.count)
        }
        context.gate.leave()
        switch Int(rc) {
        case CC_OK: return
        case CC_EINVAL: throw CausalNodeError(.invalid, detail: "the node was started without confirmsDeliveries")
        default: throw CausalNodeError(code: rc)
        }
    }

    // MARK: Membership

    /// Adds a member to the group. Its slot may lie past the current width: clocks grow,
    /// and the node tells its peers (they learn the new width). The node dials `peer` at the
    /// address given here from then on, whatever address the member announces. Any thread.
    ///
    /// - Throws: `.slotTaken` when `peer.slot` is this node's or a known member's,
    ///   `.invalid` for a bad address or a slot at or past `Options.maxWidth`, `.closed`
    ///   once closing.
    public func addPeer(_ peer: Peer) throws(CausalNodeError) {
        var cPeer = try peer.cPeer()
        let context = self.context
        guard context.gate.enter(unless: Gate.closing | Gate.closed) else { throw CausalNodeError(.closed) }
        let rc = cc_node_add_peer(context.handle, &cPeer)
        context.gate.leave()
        // The C codes of cc_node_add_peer: EINVAL is the slot (self or taken), ESYS the
        // address (checked above too), EWIDTH a slot at or past max_width.
        switch Int(rc) {
        case CC_OK: return
        case CC_EINVAL: throw CausalNodeError(.slotTaken, detail: "slot \(peer.slot)")
        case CC_ESYS:
            throw CausalNodeError(
                .invalid, detail: "peer \(peer.slot): host \"\(peer.host)\" is not an IPv4 or IPv6 address")
        case CC_EWIDTH:
            throw CausalNodeError(.invalid, detail: "peer slot \(peer.slot) at or past maxWidth")
        default: throw CausalNodeError(code: rc)
        }
    }

    // MARK: Reading

    /// The port the node listens on: the one it picked when started with port 0. Any thread.
    public var port: Int {
        context.port.load(ordering: .relaxed)
    }

    /// A snapshot of the counters. Any thread; allocates nothing. After the node has
    /// closed, the counters as they were at the close.
    public var statistics: NodeStatistics {
        let context = self.context
        guard context.gate.enter(unless: Gate.closed) else { return context.finalStatistics }
        defer { context.gate.leave() }
        var stats = cc_node_stats()
        cc_node_stats_get(context.handle, &stats)
        return NodeStatistics(stats)
    }

    /// The delivered clock: how many messages this node delivered from each slot. Hops to
    /// the loop thread and back; call from any thread but the loop's. After the node has
    /// closed, the clock as it was at the close.
    ///
    /// - Throws: `.closed` when the loop shut down before the node had started,
    ///   `.full` when the loop's call queue is full.
    public func clock() async throws(CausalNodeError) -> VectorClock {
        let context = self.context
        if context.gate.isSet(Gate.closed) { return context.finalClock }
        let clock: VectorClock?
        do {
            clock = try await loop.run { () -> VectorClock? in
                // On the loop thread, where the node closes: the flag cannot change under us.
                guard !context.gate.isSet(Gate.closed) else { return nil }
                return context.readClock()
            }
        } catch {
            // The loop stopped; the node closed with it, or is closing now.
            guard context.gate.isSet(Gate.closed) else { throw CausalNodeError(code: error.code) }
            return context.finalClock
        }
        return clock ?? context.finalClock
    }

    // MARK: Closing

    /// Closes the node and waits until it has closed: connections and the listener close,
    /// the state folder is flushed, `deliveries` and `events` finish, `broadcast` throws
    /// `.closed`, and `onDeliver` is released. A node that owns its loop shuts it down
    /// too. Any thread but the loop's; calling it again is harmless.
    ///
    /// Broadcasts that peers have not acknowledged are not waited for: call
    /// `waitUntilAllAcknowledged(deadline:)` first when that matters (with a state folder
    /// they are kept and resent after a restart).
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
        if ownsLoop { loop.shutdown() }
    }

    /// Starts closing unless that has begun; does not wait.
    private func requestClose() {
        let context = self.context
        guard context.gate.set(Gate.closing) == 0 else { return }
        guard context.gate.enter(unless: Gate.closed) else { return }
        // CC_ECLOSED: the loop is stopping and closes the node itself.
        _ = cc_node_close(context.handle)
        context.gate.leave()
    }
}

/// Ignores SIGPIPE unless the process chose an action for it; evaluated once, by the first node.
private let brokenPipesIgnored: Void = {
    var current = sigaction()
    guard sigaction(SIGPIPE, nil, &current) == 0 else { return }
    #if canImport(Darwin)
        let isDefault = current.__sigaction_u.__sa_handler == nil
    #else
        let isDefault = current.__sigaction_handler.sa_handler == nil
    #endif
    if isDefault { signal(SIGPIPE, SIG_IGN) }
}()

/// Calls `body` with a C string for `text`, or with nil.
private func withOptionalCString<R>(_ text: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let text else { return body(nil) }
    return text.withCString { body($0) }
}
