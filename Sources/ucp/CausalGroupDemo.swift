import Causal
import Foundation

/// A causal broadcast group inside one process: one `CausalInbox` per node on a shared loop, producer
/// threads that broadcast, and a delay line that carries every stamped message to the other nodes after a
/// random delay, sometimes twice (a duplicate) — so messages really arrive out of causal order and the
/// delivery engine has to hold them back. Now and then the delay line stalls all traffic to one node for a
/// while and then releases it at once, as a congested link does: messages that become deliverable together
/// then go out most urgent first.
struct CausalGroupDemo {
    var nodes = 5
    var messagesPerNode = 400
    var maxDelay: Duration = .milliseconds(4)
    var duplicateRate = 0.1
    var emergencyRate = 0.05
    var seed: UInt64 = 2026

    /// What one node saw, read after the run.
    struct NodeReport {
        var slot: Int
        var statistics: InboxStatistics
        var clock: VectorClock
        var violations: Int
        var emergencyDelivered: Int
    }

    func run() async throws -> [NodeReport] {
        let loop = try CausalLoop()
        defer { loop.shutdown() }
        let total = nodes * messagesPerNode
        let network = DelayLine(maxDelay: maxDelay, duplicateRate: duplicateRate, seed: seed)
        let done = DispatchGroup()
        var inboxes: [CausalInbox] = []
        var checkers: [OrderChecker] = []
        for slot in 0..<nodes {
            let checker = OrderChecker(width: nodes, expected: total, done: done)
            checkers.append(checker)
            done.enter()
            let inbox = try CausalInbox(
                loop: loop, width: nodes, slot: slot, capacity: 8192, maxPayload: 64,
                onDeliver: { message in checker.record(message) },
                onEmit: { message in network.carry(message.copy(), except: slot) }
            )
            inboxes.append(inbox)
        }
        network.start(inboxes: inboxes)
        defer { network.stop() }

        // The producers: each node's thread broadcasts, pausing at random, so its later messages causally
        // follow whatever the node has delivered meanwhile.
        let producers = DispatchGroup()
        for slot in 0..<nodes {
            producers.enter()
            let inbox = inboxes[slot]
            let thread = Thread { [messagesPerNode, emergencyRate, seed] in
                var random = SplitMix64(seed: seed &+ UInt64(slot) &* 7919)
                for n in 0..<messagesPerNode {
                    let level: EmergencyLevel =
                        random.nextDouble() < emergencyRate ? (random.nextDouble() < 0.5 ? .high : .critical) : .low
                    var payload = "node \(slot) message \(n)"
                    while true {
                        do {
                            try payload.withUTF8 { try inbox.broadcast(payload: UnsafeRawBufferPointer($0), level: level) }
                            break
                        } catch let error as CausalDeliveryError where error.reason == .full {
                            Thread.sleep(forTimeInterval: 0.001)  // back-pressure: every buffer is in flight
                        } catch {
                            fatalError("broadcast failed: \(error)")
                        }
                    }
                    if random.nextDouble() < 0.3 { Thread.sleep(forTimeInterval: random.nextDouble() * 0.002) }
                }
                producers.leave()
            }
            thread.start()
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                producers.wait()
                done.wait()
                continuation.resume()
            }
        }
        var reports: [NodeReport] = []
        for slot in 0..<nodes {
            reports.append(
                NodeReport(
                    slot: slot, statistics: inboxes[slot].statistics, clock: try await inboxes[slot].clock(),
                    violations: checkers[slot].violations, emergencyDelivered: checkers[slot].emergencyDelivered))
        }
        for inbox in inboxes { await inbox.close() }
        return reports
    }
}

/// Checks, independently of the engine, that every delivery at one node respects causal order.
private final class OrderChecker: @unchecked Sendable {
    private var delivered: [UInt64]
    private let expected: Int
    private let done: DispatchGroup
    private var count = 0
    private(set) var violations = 0
    private(set) var emergencyDelivered = 0

    init(width: Int, expected: Int, done: DispatchGroup) {
        self.delivered = Array(repeating: 0, count: width)
        self.expected = expected
        self.done = done
    }

    /// Called on the loop thread only.
    func record(_ message: borrowing UnsafeInboxMessage) {
        let sender = message.sender
        if message.clock[sender] != delivered[sender] + 1 { violations += 1 }
        for k in 0..<min(message.clock.count, delivered.count) where k != sender && message.clock[k] > delivered[k] {
            violations += 1
        }
        delivered[sender] += 1
        if message.level > .low { emergencyDelivered += 1 }
        count += 1
        if count == expected { done.leave() }
    }
}

/// Carries messages to other nodes after a random delay, on a thread of its own.
private final class DelayLine: @unchecked Sendable {
    private struct Parcel {
        var due: ContinuousClock.Instant
        var target: Int
        var message: CausalMessage
    }
    private let condition = NSCondition()
    private var parcels: [Parcel] = []
    private var inboxes: [CausalInbox] = []
    private var random: SplitMix64
    private var stopped = false
    private let maxDelay: Duration
    private let duplicateRate: Double
    private let clock = ContinuousClock()
    private var stalledUntil: [ContinuousClock.Instant] = []
    private var nextStall: ContinuousClock.Instant
    private static let stall = Duration.milliseconds(25)

    init(maxDelay: Duration, duplicateRate: Double, seed: UInt64) {
        self.maxDelay = maxDelay
        self.duplicateRate = duplicateRate
        self.random = SplitMix64(seed: seed ^ 0xD1CE)
        self.nextStall = clock.now + Self.stall
    }

    func start(inboxes: [CausalInbox]) {
        condition.lock()
        self.inboxes = inboxes
        stalledUntil = Array(repeating: clock.now, count: inboxes.count)
        condition.unlock()
        Thread { self.pump() }.start()
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    /// Any thread: schedules `message` for every node but `except`, some of them twice.
    func carry(_ message: CausalMessage, except sender: Int) {
        condition.lock()
        let now = clock.now
        if now >= nextStall {
            stalledUntil[Int(random.next() % UInt64(inboxes.count))] = now + Self.stall
            nextStall = now + Self.stall * 3
        }
        for target in inboxes.indices where target != sender {
            let held = max(now, stalledUntil[target])
            push(Parcel(due: held + maxDelay * random.nextDouble(), target: target, message: message))
            if random.nextDouble() < duplicateRate {
                push(Parcel(due: held + maxDelay * (1 + random.nextDouble()), target: target, message: message))
            }
        }
        condition.signal()
        condition.unlock()
    }

    private func pump() {
        condition.lock()
        while !stopped {
            guard let parcel = parcels.first else {
                condition.wait()
                continue
            }
            let now = clock.now
            if parcel.due > now {
                let wait = parcel.due - now
                let seconds = Double(wait.components.seconds) + Double(wait.components.attoseconds) * 1e-18
                _ = condition.wait(until: Date(timeIntervalSinceNow: seconds))
                continue
            }
            popEarliest()
            let inbox = inboxes[parcel.target]
            condition.unlock()
            post(parcel.message, to: inbox)
            condition.lock()
        }
        condition.unlock()
    }

    // `parcels` is a binary min-heap on `due`.
    private func push(_ parcel: Parcel) {
        parcels.append(parcel)
        var child = parcels.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard parcels[child].due < parcels[parent].due else { break }
            parcels.swapAt(child, parent)
            child = parent
        }
    }

    private func popEarliest() {
        parcels.swapAt(0, parcels.count - 1)
        parcels.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < parcels.count && parcels[left].due < parcels[smallest].due { smallest = left }
            if right < parcels.count && parcels[right].due < parcels[smallest].due { smallest = right }
            if smallest == parent { return }
            parcels.swapAt(parent, smallest)
            parent = smallest
        }
    }

    private func post(_ message: CausalMessage, to inbox: CausalInbox) {
        while true {
            do {
                try inbox.post(message)
                return
            } catch where error.reason == .full {
                Thread.sleep(forTimeInterval: 0.0005)
            } catch {
                return  // closed: the run is over
            }
        }
    }
}

/// A small deterministic random generator so a demo run can be repeated.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
    mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}
