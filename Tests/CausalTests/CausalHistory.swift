import Causal

/// SplitMix64: a small seeded generator, so a failing history can be replayed.
struct HistoryRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// A causal history made by simulating a group: each step one node either sends (ticks
/// its own entry and stamps the message with its clock) or delivers, in a random causal
/// order of its own, one of the messages others sent it (and merges the clock). So the
/// messages depend on each other across senders, not only in per-sender sequences.
///
/// Each message's `kind` is its index in `messages` (send order), which names it.
struct CausalHistory {
    let width: Int
    private(set) var messages: [CausalMessage] = []

    init(nodes: Int, messages count: Int, seed: UInt64, emergencyRate: Double = 0.15) {
        width = nodes
        var random = HistoryRandom(seed: seed)
        var clocks = Array(repeating: VectorClock(width: nodes), count: nodes)
        var inTransit = Array(repeating: [Int](), count: nodes)
        while messages.count < count {
            let node = Int.random(in: 0..<nodes, using: &random)
            if inTransit[node].isEmpty || Double.random(in: 0..<1, using: &random) < 0.35 {
                clocks[node].tick(node)
                var level = EmergencyLevel.low
                if Double.random(in: 0..<1, using: &random) < emergencyRate {
                    level = EmergencyLevel.allCases.randomElement(using: &random)!
                }
                let id = messages.count
                messages.append(
                    CausalMessage(
                        sender: node, clock: clocks[node], level: level, kind: UInt32(id),
                        payload: [UInt8(truncatingIfNeeded: id), UInt8(truncatingIfNeeded: id >> 8)]))
                for other in 0..<nodes where other != node { inTransit[other].append(id) }
            } else {
                let ready = inTransit[node].indices.filter {
                    Self.isDeliverable(messages[inTransit[node][$0]], at: clocks[node])
                }
                // The earliest undelivered message is always deliverable.
                let pick = ready.randomElement(using: &random)!
                clocks[node].merge(messages[inTransit[node][pick]].clock)
                inTransit[node].remove(at: pick)
            }
        }
    }

    /// The messages sent from each slot.
    var sentPerSender: [UInt64] {
        var counts = Array(repeating: UInt64(0), count: width)
        for message in messages { counts[message.sender] += 1 }
        return counts
    }

    /// The messages with a ~`rate` share of duplicates mixed in, shuffled.
    func arrivals(duplicateRate rate: Double, seed: UInt64) -> (arrivals: [CausalMessage], duplicates: Int) {
        var random = HistoryRandom(seed: seed)
        let duplicates = Int(Double(messages.count) * rate)
        var arrivals = messages
        for _ in 0..<duplicates { arrivals.append(messages.randomElement(using: &random)!) }
        arrivals.shuffle(using: &random)
        return (arrivals, duplicates)
    }

    /// The BSS rule, written out independently of the engine.
    static func isDeliverable(_ message: CausalMessage, at local: VectorClock) -> Bool {
        let sender = message.sender
        guard message.clock[sender] == local[sender] + 1 else { return false }
        for k in 0..<message.clock.width where k != sender && message.clock[k] > local[k] { return false }
        return true
    }

    /// True when `a` happened before `b`: `a <= b` entry by entry and `a != b`.
    static func precedes(_ a: VectorClock, _ b: VectorClock) -> Bool {
        let width = max(a.width, b.width)
        var smaller = false
        for k in 0..<width {
            if a[k] > b[k] { return false }
            if a[k] < b[k] { smaller = true }
        }
        return smaller
    }

    /// Problems with `delivered` as a delivery of this history: messages delivered before
    /// a predecessor, twice, or never. Empty when the delivery is exactly once and causal.
    func violations(of delivered: [CausalMessage]) -> [String] {
        var problems: [String] = []
        var position: [Int: Int] = [:]
        for (index, message) in delivered.enumerated() {
            let id = Int(message.kind)
            if position[id] != nil { problems.append("message \(id) delivered twice") }
            position[id] = index
            if message != messages[id] { problems.append("message \(id) altered: \(message)") }
        }
        for (id, message) in messages.enumerated() {
            guard let at = position[id] else {
                problems.append("message \(id) never delivered")
                continue
            }
            for (earlier, before) in messages.enumerated() where Self.precedes(before.clock, message.clock) {
                if let beforeAt = position[earlier], beforeAt > at {
                    problems.append("message \(id) delivered before its predecessor \(earlier)")
                }
            }
        }
        return problems
    }
}
