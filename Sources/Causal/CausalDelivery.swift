import CCausal

/// A causal delivery engine: takes messages in any order and hands them out in causal
/// order, the most urgent first among those deliverable at the same moment.
///
/// A message from sender `j` is deliverable when it is the next one from `j`
/// (`clock[j] == local[j] + 1`) and everything it depends on has been delivered
/// (`clock[k] <= local[k]` for every other `k`); delivering it advances `local[j]`.
/// Messages that arrive early wait, within bounds: a sender may run at most `window`
/// messages ahead of what was delivered from it, and at most `capacity` messages wait at
/// once. A higher `EmergencyLevel` goes first among deliverable messages, FIFO within a
/// level, but never ahead of its own predecessors. Each message costs O(width) amortised
/// (Birman–Schiper–Stephenson over the C engine `cc_delivery`).
///
/// Thread safety: none. An engine belongs to one thread (or one actor) at a time; it is
/// not `Sendable`. The C engine allocates only in `init` and `grow(to:)`; this wrapper
/// allocates node storage the first time the number of waiting messages reaches a new
/// high, and a clock buffer for a node the first time it holds a clock that wide, so a
/// steady stream of offers allocates nothing here (the messages themselves are the
/// caller's values).
///
/// Memory: the C engine links caller-owned `cc_msg` headers, each pointing at a clock
/// buffer the caller keeps alive while the engine holds it. Each header lives in a `Node`
/// inside a chunk of nodes that never moves or shrinks until `deinit`; a node owns its
/// clock buffer (reused, reallocated only when a wider clock arrives) and its index into
/// `messages`, where the Swift message (payload, kind, clock) waits. Free nodes sit on a
/// free list; `capacity + 1` nodes exist at most, one more than the engine may hold, so an
/// offer always finds a node even when the pending set is full (and gets `.full` back).
/// `deinit` frees the clock buffers, the chunks and the engine.
public struct CausalDelivery: ~Copyable {
    /// What became of an offered message that was not refused.
    public enum OfferOutcome: Hashable, Sendable {
        /// The engine holds the message; it is delivered by `next()` once deliverable.
        case accepted
        /// The message was already delivered or is already waiting; it was dropped.
        case duplicate
    }

    /// A `cc_msg` the engine can link, with the storage that stays alive while it does.
    private struct Node {
        var head: cc_msg
        var clock: UnsafeMutablePointer<UInt64>?
        var clockCapacity: Int
        var index: Int
    }

    private static let headOffset = MemoryLayout<Node>.offset(of: \Node.head)!
    private static let chunkSize = 256

    private let engine: UnsafeMutablePointer<cc_delivery>
    private let nodeLimit: Int
    private var chunks: [UnsafeMutablePointer<Node>] = []
    private var nodeCount = 0
    private var free: [UnsafeMutablePointer<Node>] = []
    private var messages: [CausalMessage?] = []
    /// Messages held per sender, to keep local sends and peers' messages apart.
    private var pendingFrom: [Int]
    /// Slots this engine has sent from with `send(from:)`.
    private var sendsFrom: [Bool]
    /// Offers refused in Swift before reaching C (counted into `statistics`).
    private var refusedHere: UInt64 = 0

    /// An engine for `width` senders, all at zero.
    ///
    /// - Parameters:
    ///   - width: The group's size; at least 1.
    ///   - window: How far ahead of what was delivered a sender's messages may be and still
    ///     wait (rounded up to a power of two). Memory is O(width × window).
    ///   - capacity: The most messages waiting at once; at least 1.
    /// - Throws: `.invalid` for a width, window or capacity out of range, `.memory`.
    public init(width: Int, window: Int = 1024, capacity: Int = 65_536) throws(CausalDeliveryError) {
        guard width >= 1, width <= Int(UInt32.max), window >= 0, capacity >= 1, capacity < Int(Int32.max) else {
            throw CausalDeliveryError(.invalid)
        }
        let engine = UnsafeMutablePointer<cc_delivery>.allocate(capacity: 1)
        let rc = cc_delivery_init(engine, width, window, capacity)
        guard Int(rc) == CC_OK else {
            engine.deallocate()
            throw CausalDeliveryError(code: rc)
        }
        self.engine = engine
        self.nodeLimit = capacity + 1
        self.pendingFrom = Array(repeating: 0, count: width)
        self.sendsFrom = Array(repeating: false, count: width)
    }

    deinit {
        var remaining = nodeCount
        for chunk in chunks {
            let count = min(remaining, Self.chunkSize)
            for i in 0..<count { chunk[i].clock?.deallocate() }
            chunk.deinitialize(count: count)
            chunk.deallocate()
            remaining -= count
        }
        cc_delivery_destroy(engine)
        engine.deallocate()
    }

    /// The group's size: the width of the local clock. O(1).
    public var width: Int { engine.pointee.width }

    /// The local clock: how many messages were delivered (or sent) from each slot. O(width).
    public var clock: VectorClock {
        VectorClock(copying: UnsafeBufferPointer(start: cc_delivery_clock(engine), count: width))
    }

    /// The messages held now, deliverable or waiting. O(1).
    public var pendingCount: Int { engine.pointee.pending }

    /// A snapshot of the counters. O(1).
    public var statistics: DeliveryStatistics {
        let s = engine.pointee.stats
        return DeliveryStatistics(
            offered: s.offered + refusedHere, delivered: s.delivered, duplicates: s.duplicates,
            heldBack: s.held_back, rejected: s.rejected + refusedHere, overtakes: s.overtakes)
    }

    /// Widens the group to `width` senders; the new slots start at 0 and waiting messages
    /// are kept. Growing to the current width does nothing.
    ///
    /// - Throws: `.width` when `width` is narrower than the group (nothing changes),
    ///   `.invalid` when it is too large, `.memory`.
    public mutating func grow(to width: Int) throws(CausalDeliveryError) {
        guard width >= self.width else { throw CausalDeliveryError(.width) }
        guard width <= Int(UInt32.max) else { throw CausalDeliveryError(.invalid) }
        let rc = cc_delivery_grow(engine, width)
        guard Int(rc) == CC_OK else { throw CausalDeliveryError(code: rc) }
        pendingFrom.append(contentsOf: repeatElement(0, count: width - pendingFrom.count))
        sendsFrom.append(contentsOf: repeatElement(false, count: width - sendsFrom.count))
    }

    /// Hands a message from a peer to the engine. O(width) amortised.
    ///
    /// A clock narrower than the group is read as padded with zeros.
    ///
    /// - Returns: `.accepted` when the engine now holds the message (deliverable or
    ///   waiting), `.duplicate` when it was already delivered or is already waiting.
    /// - Throws: With the message's sender and sequence, and nothing changed but the
    ///   `rejected` counter: `.full` (capacity messages wait already), `.ahead` (beyond the
    ///   window), `.width` (clock wider than the group), `.sender` (sender outside the
    ///   message's clock, or a slot this engine sends from with a sequence it has not
    ///   sent), `.invalid` (`clock[sender] == 0`).
    @discardableResult
    public mutating func offer(_ message: CausalMessage) throws(CausalDeliveryError) -> OfferOutcome {
        let sender = message.sender
        let clockWidth = message.clock.width
        if clockWidth > width {
            refusedHere += 1
            throw CausalDeliveryError(.width, sender: sender, sequence: message.sequence)
        }
        // The C engine assumes nobody else offers a message as a slot it sends from (it
        // would hold a message that its own sends then overtake); refuse such forgeries.
        if sender < sendsFrom.count, sendsFrom[sender], message.sequence > cc_delivery_clock(engine)[sender] {
            refusedHere += 1
            throw CausalDeliveryError(.sender, sender: sender, sequence: message.sequence)
        }

        let node = takeNode()
        if node.pointee.clockCapacity < clockWidth {
            node.pointee.clock?.deallocate()
            let capacity = max(clockWidth, width)
            node.pointee.clock = .allocate(capacity: capacity)
            node.pointee.clockCapacity = capacity
        }
        let buffer = node.pointee.clock
        message.clock.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { buffer!.update(from: base, count: source.count) }
        }
        node.pointee.head = cc_msg()
        node.pointee.head.clock = UnsafePointer(buffer)
        node.pointee.head.width = UInt32(clockWidth)
        node.pointee.head.sender = UInt32(clamping: sender)
        node.pointee.head.level = message.level.rawValue

        let rc = cc_delivery_offer(engine, Self.head(of: node))
        guard Int(rc) == CC_OK else {
            free.append(node)
            if Int(rc) == CC_EDUPLICATE { return .duplicate }
            throw CausalDeliveryError(code: rc, sender: sender, sequence: message.sequence)
        }
        messages[node.pointee.index] = message
        pendingFrom[sender] += 1
        return .accepted
    }

    /// Takes the next deliverable message, the most urgent first, and applies it to the
    /// local clock; `nil` when nothing is deliverable now. O(width) amortised.
    public mutating func next() -> CausalMessage? {
        guard let head = cc_delivery_next(engine) else { return nil }
        let node = Self.node(of: head)
        let index = node.pointee.index
        guard let message = messages[index] else { preconditionFailure("the engine returned a free node") }
        messages[index] = nil
        pendingFrom[message.sender] -= 1
        free.append(node)
        return message
    }

    /// Takes every message deliverable now, in delivery order (each one may make more
    /// deliverable; those are included).
    public mutating func deliverable() -> [CausalMessage] {
        var delivered: [CausalMessage] = []
        while let message = next() { delivered.append(message) }
        return delivered
    }

    /// Stamps a local send from `slot`: advances `clock[slot]` and returns the message
    /// carrying the new clock, to be sent to the peers. Counts as delivered locally, and
    /// may make waiting messages deliverable. O(width).
    ///
    /// From then on offers from `slot` with a sequence not yet sent are refused (`.sender`).
    /// Requires `0 <= slot < width` and no message from `slot` waiting (a slot is either
    /// this node's own or a peer's).
    public mutating func send(
        from slot: Int, level: EmergencyLevel = .low, kind: UInt32 = 0, payload: [UInt8] = []
    ) -> CausalMessage {
        precondition(slot >= 0 && slot < width, "slot \(slot) outside a group of width \(width)")
        precondition(pendingFrom[slot] == 0, "slot \(slot) has peers' messages waiting; it cannot also send")
        sendsFrom[slot] = true
        var clock = VectorClock(width: width)
        clock.withUnsafeMutableBufferPointer { _ = cc_delivery_send(engine, slot, $0.baseAddress) }
        return CausalMessage(sender: slot, clock: clock, level: level, kind: kind, payload: payload)
    }

    // MARK: Nodes

    private static func head(of node: UnsafeMutablePointer<Node>) -> UnsafeMutablePointer<cc_msg> {
        (UnsafeMutableRawPointer(node) + headOffset).assumingMemoryBound(to: cc_msg.self)
    }

    private static func node(of head: UnsafeMutablePointer<cc_msg>) -> UnsafeMutablePointer<Node> {
        (UnsafeMutableRawPointer(head) - headOffset).assumingMemoryBound(to: Node.self)
    }

    /// A free node; allocates a chunk when every node so far is in use.
    private mutating func takeNode() -> UnsafeMutablePointer<Node> {
        if let node = free.popLast() { return node }
        precondition(nodeCount < nodeLimit, "more nodes in use than the engine can hold")
        let count = min(Self.chunkSize, nodeLimit - nodeCount)
        let chunk = UnsafeMutablePointer<Node>.allocate(capacity: count)
        for i in 0..<count {
            (chunk + i).initialize(to: Node(head: cc_msg(), clock: nil, clockCapacity: 0, index: nodeCount + i))
        }
        chunks.append(chunk)
        nodeCount += count
        messages.append(contentsOf: repeatElement(nil, count: count))
        free.reserveCapacity(nodeCount)
        for i in stride(from: count - 1, through: 1, by: -1) { free.append(chunk + i) }
        return chunk
    }
}
