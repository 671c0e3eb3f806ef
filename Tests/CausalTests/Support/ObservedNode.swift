import Causal

/// A `CausalNode` whose deliveries and events are collected as they come, so that a test can
/// wait (with a deadline) for what it expects and then inspect all of it.
struct ObservedNode: Sendable {
    let node: CausalNode
    let delivered = Collector<CausalMessage>()
    let events = Collector<NodeEvent>()

    init(_ node: CausalNode) {
        self.node = node
        Task { [node, delivered] in
            for await message in node.deliveries { delivered.append(message) }
            delivered.finish()
        }
        Task { [node, events] in
            for await event in node.events { events.append(event) }
            events.finish()
        }
    }

    /// Starts a node on its own loop, listening on 127.0.0.1 with a free port.
    init(
        slot: Int, width: Int, peers: [CausalNode.Peer], key: ClusterKey, options: CausalNode.Options = .init()
    ) throws {
        self.init(
            try CausalNode(
                slot: slot, width: width, listen: ("127.0.0.1", 0), peers: peers, key: key, options: options))
    }

    /// Waits until `count` messages have been delivered; false at the deadline.
    func waitForDeliveries(_ count: Int, until deadline: ContinuousClock.Instant) async -> Bool {
        await delivered.wait(forCount: count, until: deadline)
    }

    /// Waits until an event matching `matches` has come; false at the deadline.
    func waitForEvent(
        until deadline: ContinuousClock.Instant, _ matches: @escaping @Sendable (NodeEvent) -> Bool
    ) async -> Bool {
        await events.wait(until: deadline) { $0.contains(where: matches) }
    }

    /// Waits until the node has `count` peers up.
    func waitForPeersUp(_ count: Int, until deadline: ContinuousClock.Instant) async -> Bool {
        await events.wait(until: deadline) { events in
            var up = Set<Int>()
            for event in events {
                switch event {
                case .peerUp(let slot): up.insert(slot)
                case .peerDown(let slot, _): up.remove(slot)
                default: break
                }
            }
            return up.count >= count
        }
    }
}

/// What is wrong with a delivery order, as readable lines: a message delivered twice or
/// out of causal order (before something it depended on). Empty when all is well.
///
/// Walks the deliveries with the vector of what was delivered so far from each sender
/// (starting from `start`, zeros by default): each message must be the next from its sender,
/// and its clock must not exceed that vector anywhere else (everything it saw had been
/// delivered before it).
func causalViolations(of messages: [CausalMessage], width: Int, start: [UInt64]? = nil) -> [String] {
    var delivered = start ?? [UInt64](repeating: 0, count: width)
    var problems: [String] = []
    for (position, message) in messages.enumerated() {
        let sender = message.sender
        guard sender < width else {
            problems.append("#\(position): sender \(sender) outside the width \(width)")
            continue
        }
        let sequence = message.clock[sender]
        if sequence != delivered[sender] + 1 {
            problems.append("#\(position): from \(sender) got \(sequence), expected \(delivered[sender] + 1)")
        }
        for slot in 0..<max(width, message.clock.width) where slot != sender {
            let seen = slot < width ? delivered[slot] : 0
            if message.clock[slot] > seen {
                problems.append(
                    "#\(position): message \(sender):\(sequence) depends on \(slot):\(message.clock[slot]), delivered \(seen)"
                )
            }
        }
        delivered[sender] = max(delivered[sender], sequence)
        if problems.count > 20 { break }
    }
    return problems
}
