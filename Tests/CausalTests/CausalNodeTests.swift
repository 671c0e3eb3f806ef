import NetworkFaults
import Causal
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Quick pacing for tests: failures are noticed and repaired in well under a second.
let quickOptions = CausalNode.Options(
    heartbeat: .milliseconds(100), timeout: .seconds(2), reconnectMin: .milliseconds(10),
    reconnectMax: .milliseconds(200), handshakeTimeout: .milliseconds(500))

/// The level of broadcast `index`: mostly `.low`, some emergencies.
func testLevel(_ index: Int) -> EmergencyLevel {
    index % 50 == 7 ? .critical : index % 20 == 3 ? .high : index % 30 == 11 ? .medium : .low
}

/// Broadcast `index` of `sender`: names both, so a delivery can be checked against its clock.
func testPayload(sender: Int, index: Int) -> [UInt8] {
    [UInt8(sender), UInt8(truncatingIfNeeded: index), UInt8(truncatingIfNeeded: index >> 8)]
}

@Suite("CausalNode")
struct CausalNodeTests {
    // MARK: A group over delaying, failing links

    @Test(
        "three nodes through delay proxies, 500 broadcasts each: every message once, causally, same final clock",
        .timeLimit(.minutes(1)), arguments: [false, true])
    func threeNodesThroughProxies(cutMidway: Bool) async throws {
        try await withCleanup { cleanup in
            let count = 500
            let key = ClusterKey.random()
            let proxies = try (0..<3).map { _ in try DelayProxy(maxDelay: .milliseconds(3)) }
            cleanup.add { proxies.forEach { $0.close() } }
            var nodes: [ObservedNode] = []
            for slot in 0..<3 {
                let peers = (0..<3).filter { $0 != slot }.map {
                    CausalNode.Peer(slot: $0, host: "127.0.0.1", port: proxies[$0].port)
                }
                let node = try ObservedNode(slot: slot, width: 3, peers: peers, key: key, options: quickOptions)
                cleanup.add { await node.node.close() }
                #expect(node.node.port > 0)
                proxies[slot].setTarget(node.node.port)
                nodes.append(node)
            }

            // All broadcast at once, pausing now and then so that each hears the others
            // between its own broadcasts (which makes the messages depend on each other).
            let deadline = ContinuousClock.now + .seconds(40)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (sender, node) in nodes.enumerated() {
                    group.addTask {
                        for index in 0..<count {
                            try await node.node.broadcast(
                                testPayload(sender: sender, index: index), emergency: testLevel(index),
                                waitingUntil: deadline)
                            if index % 25 == 24 { try await Task.sleep(for: .milliseconds(2)) }
                            if cutMidway && sender == 0 && index == count / 2 { proxies.forEach { $0.cut() } }
                        }
                    }
                }
                try await group.waitForAll()
            }

            for (slot, node) in nodes.enumerated() {
                let complete = await node.waitForDeliveries(3 * count, until: deadline)
                #expect(complete, "node \(slot) delivered \(node.delivered.values.count) of \(3 * count)")
            }
            var clocks: [VectorClock] = []
            for (slot, node) in nodes.enumerated() {
                let delivered = node.delivered.values
                #expect(delivered.count == 3 * count, "node \(slot)")
                #expect(causalViolations(of: delivered, width: 3) == [], "node \(slot)")
                let ids = Set(delivered.map { "\($0.sender):\($0.sequence)" })
                #expect(ids.count == delivered.count, "node \(slot) delivered a message twice")
                // The senders heard each other between broadcasts: the history is not three
                // independent streams.
                let dependent = delivered.filter { m in (0..<3).contains { $0 != m.sender && m.clock[$0] > 0 } }
                #expect(
                    dependent.count > count, "node \(slot): only \(dependent.count) messages depend on another sender")
                for message in delivered {
                    let index = Int(message.sequence) - 1
                    #expect(message.payload == testPayload(sender: message.sender, index: index))
                    #expect(message.level == testLevel(index))
                }
                clocks.append(try await node.node.clock())
                let statistics = node.node.statistics
                #expect(statistics.delivered == UInt64(3 * count))
                #expect(statistics.sent == UInt64(count))
                #expect(statistics.width == 3)
            }
            #expect(clocks.allSatisfy { $0 == VectorClock([500, 500, 500]) }, "\(clocks)")
            if cutMidway {
                let reconnects = nodes.map { $0.node.statistics.reconnects }.reduce(0, +)
                #expect(reconnects > 0)
                #expect(proxies.map(\.accepted).reduce(0, +) > 3)
            }
        }
    }

    // MARK: Strangers

    @Test(
        "a wrong key, garbage, an oversized frame and a silent connection are refused with reasons; the group carries on",
        .timeLimit(.minutes(1)))
    func strangersAreRefused() async throws {
        try await withCleanup { cleanup in
            let key = ClusterKey.random()
            var options = quickOptions
            options.handshakeTimeout = .milliseconds(300)
            // The stranger holds slot 2 with another key. It dials no one (it has the highest
            // slot); the members dial it and must be refused.
            let stranger = try ObservedNode(
                slot: 2, width: 3,
                peers: [.init(slot: 0, host: "127.0.0.1", port: 9), .init(slot: 1, host: "127.0.0.1", port: 9)],
                key: ClusterKey.random(), options: options)
            cleanup.add { await stranger.node.close() }
            // B is dialed by A, so A's address does not matter to it.
            let b = try ObservedNode(
                slot: 1, width: 3,
                peers: [
                    .init(slot: 0, host: "127.0.0.1", port: 9),
                    .init(slot: 2, host: "127.0.0.1", port: stranger.node.port),
                ], key: key, options: options)
            cleanup.add { await b.node.close() }
            let a = try ObservedNode(
                slot: 0, width: 3,
                peers: [
                    .init(slot: 1, host: "127.0.0.1", port: b.node.port),
                    .init(slot: 2, host: "127.0.0.1", port: stranger.node.port),
                ], key: key, options: options)
            cleanup.add { await a.node.close() }
            let deadline = ContinuousClock.now + .seconds(30)

            #expect(await a.waitForPeersUp(1, until: deadline))
            #expect(await a.waitForEvent(until: deadline) { if case .refused = $0 { true } else { false } })
            #expect(await stranger.waitForEvent(until: deadline) { if case .refused = $0 { true } else { false } })

            // Garbage: a frame with a version no one speaks.
            let garbage = try Socket.connect(port: a.node.port)
            Socket.send(garbage, [40, 0, 0, 0, 9, 1, 0, 0] + [UInt8](repeating: 0xAB, count: 40))
            // An oversized frame: a length far beyond the largest frame.
            let oversized = try Socket.connect(port: a.node.port)
            Socket.send(oversized, [0xff, 0xff, 0xff, 0x7f, 1, 1, 0, 0] + [UInt8](repeating: 0, count: 24))
            // A connection that says nothing at all.
            let silent = try Socket.connect(port: a.node.port)
            defer { [garbage, oversized, silent].forEach { close($0) } }
            async let garbageClosed = Socket.closed(garbage, timeout: .seconds(10))
            async let oversizedClosed = Socket.closed(oversized, timeout: .seconds(10))
            async let silentClosed = Socket.closed(silent, timeout: .seconds(10))
            #expect(await garbageClosed)
            #expect(await oversizedClosed)
            #expect(await silentClosed)

            // Every refusal is reported with its reason and the address.
            let reasons = ["unknown frame version", "larger than the maximum frame size", "handshake timed out"]
            let reported = await a.events.wait(until: deadline) { events in
                let refusals = events.compactMap { event -> String? in
                    guard case .refused(_, let address?, let reason, _) = event, address.hasPrefix("127.0.0.1:")
                    else { return nil }
                    return reason
                }
                return reasons.allSatisfy { wanted in refusals.contains { $0.contains(wanted) } }
            }
            #expect(reported, "\(a.events.values)")
            #expect(a.node.statistics.refused >= 4)
            // The wrong key is named as such by the side that checked it.
            let wrongKey = { (events: [NodeEvent]) in
                events.contains {
                    if case .refused(_, _, let reason, _) = $0 {
                        reason.contains("authentication failed")
                    } else {
                        false
                    }
                }
            }
            #expect(wrongKey(a.events.values) || wrongKey(b.events.values) || wrongKey(stranger.events.values))

            // The members still deliver to each other; the stranger hears nothing from them.
            for index in 0..<20 {
                try a.node.broadcast(testPayload(sender: 0, index: index))
                try b.node.broadcast(testPayload(sender: 1, index: index))
            }
            try stranger.node.broadcast([1, 2, 3])
            #expect(await a.waitForDeliveries(40, until: deadline))
            #expect(await b.waitForDeliveries(40, until: deadline))
            #expect(causalViolations(of: a.delivered.values, width: 3) == [])
            #expect(causalViolations(of: b.delivered.values, width: 3) == [])
            #expect(await stranger.waitForDeliveries(1, until: deadline))
            #expect(stranger.delivered.values.allSatisfy { $0.sender == 2 })
            #expect(a.delivered.values.allSatisfy { $0.sender != 2 })
            #expect(a.node.statistics.peersUp == 1)
        }
    }

    // MARK: Membership and restarts

    @Test(
        "a member added to one member is announced to the others; messages flow and the clocks grow",
        .timeLimit(.minutes(1)))
    func growth() async throws {
        try await withCleanup { cleanup in
            let key = ClusterKey.random()
            let b = try ObservedNode(
                slot: 1, width: 2, peers: [.init(slot: 0, host: "127.0.0.1", port: 9)], key: key, options: quickOptions)
            cleanup.add { await b.node.close() }
            let a = try ObservedNode(
                slot: 0, width: 2, peers: [.init(slot: 1, host: "127.0.0.1", port: b.node.port)], key: key,
                options: quickOptions)
            cleanup.add { await a.node.close() }
            let deadline = ContinuousClock.now + .seconds(30)
            try a.node.broadcast([1])
            #expect(await b.waitForDeliveries(1, until: deadline))

            let c = try ObservedNode(
                slot: 2, width: 3,
                peers: [
                    .init(slot: 0, host: "127.0.0.1", port: a.node.port),
                    .init(slot: 1, host: "127.0.0.1", port: b.node.port),
                ], key: key, options: quickOptions)
            cleanup.add { await c.node.close() }
            try a.node.addPeer(.init(slot: 2, host: "127.0.0.1", port: c.node.port))
            #expect(throws: CausalNodeError.self) {
                try a.node.addPeer(.init(slot: 1, host: "127.0.0.1", port: b.node.port))
            }
            #expect(await a.waitForEvent(until: deadline) { $0 == .memberAdded(slot: 2, width: 3) })
            // B learns the new member from A's announcement, and dials it.
            #expect(await b.waitForEvent(until: deadline) { $0 == .memberAdded(slot: 2, width: 3) })
            #expect(await c.waitForPeersUp(2, until: deadline))
            #expect(throws: CausalNodeError(.slotTaken, detail: "slot 2")) {
                try b.node.addPeer(.init(slot: 2, host: "127.0.0.1", port: c.node.port))
            }

            try c.node.broadcast([3])
            try b.node.broadcast([2])
            for node in [a, b] { #expect(await node.waitForDeliveries(3, until: deadline)) }
            #expect(await c.waitForDeliveries(2, until: deadline))
            #expect(a.node.statistics.width == 3)
            #expect(try await a.node.clock().width == 3)
            for node in [a, b] { #expect(causalViolations(of: node.delivered.values, width: 3) == []) }
            // A member that joins starts at the group's frontier: what was sent before it joined
            // counts as delivered there (A's first message), and it gets everything after.
            #expect(causalViolations(of: c.delivered.values, width: 3, start: [1, 0, 0]) == [])
            #expect(Set(c.delivered.values.map(\.sender)) == [1, 2])
        }
    }

    @Test(
        "with a state folder a member survives its restart: no sequence reused, nothing lost or repeated",
        .timeLimit(.minutes(1)))
    func restartWithState() async throws {
        try await withCleanup { cleanup in
            let folder = try TemporaryFolder()
            cleanup.add { folder.remove() }
            let key = ClusterKey.random()
            var stateful = quickOptions
            stateful.stateDirectory = folder.file("a")
            let b = try ObservedNode(
                slot: 1, width: 2, peers: [.init(slot: 0, host: "127.0.0.1", port: 9)], key: key, options: quickOptions)
            cleanup.add { await b.node.close() }
            let peers = [CausalNode.Peer(slot: 1, host: "127.0.0.1", port: b.node.port)]
            let deadline = ContinuousClock.now + .seconds(30)

            let a = try ObservedNode(slot: 0, width: 2, peers: peers, key: key, options: stateful)
            for index in 0..<10 { try a.node.broadcast(testPayload(sender: 0, index: index)) }
            for index in 0..<5 { try b.node.broadcast(testPayload(sender: 1, index: index)) }
            #expect(await b.waitForDeliveries(15, until: deadline))
            #expect(await a.waitForDeliveries(15, until: deadline))
            await a.node.close()
            #expect(try await a.node.clock() == VectorClock([10, 5]))

            // While it is away, the other member goes on.
            for index in 5..<8 { try b.node.broadcast(testPayload(sender: 1, index: index)) }
            let restarted = try ObservedNode(slot: 0, width: 2, peers: peers, key: key, options: stateful)
            cleanup.add { await restarted.node.close() }
            try restarted.node.broadcast(testPayload(sender: 0, index: 10))
            #expect(await restarted.waitForDeliveries(4, until: deadline))
            #expect(await b.waitForDeliveries(19, until: deadline))
            #expect(try await restarted.node.clock() == VectorClock([11, 8]))
            let fromB = restarted.delivered.values.filter { $0.sender == 1 }.map(\.sequence)
            #expect(fromB == [6, 7, 8])
            let atB = b.delivered.values.filter { $0.sender == 0 }.map(\.sequence)
            #expect(atB == Array(1...11))
            #expect(causalViolations(of: b.delivered.values, width: 2) == [])
        }
    }

    // MARK: The Swift surface

    @Test("onDeliver sees each message without a copy; deliveries then stays empty", .timeLimit(.minutes(1)))
    func rawHandler() async throws {
        let seen = Collector<[UInt8]>()
        let node = try CausalNode(
            slot: 0, width: 1, listen: ("127.0.0.1", 0), peers: [], key: .random(),
            onDeliver: { message in seen.append(Array(message.payload)) })
        for index in 0..<10 { try node.broadcast(testPayload(sender: 0, index: index), kind: 7) }
        #expect(await seen.wait(forCount: 10, until: .now + .seconds(20)))
        #expect(seen.values == (0..<10).map { testPayload(sender: 0, index: $0) })
        var copied = 0
        for await _ in node.deliveries { copied += 1 }
        #expect(copied == 0)
        await node.close()
    }

    @Test("back-pressure: a full send window throws .full; waiting gives up at the deadline", .timeLimit(.minutes(1)))
    func backPressure() async throws {
        // A peer that accepts connections but never answers: nothing is ever acknowledged.
        let mute = try Socket.listen()
        defer { close(mute) }
        var options = quickOptions
        options.sendWindow = 4
        let node = try CausalNode(
            slot: 0, width: 2, listen: ("127.0.0.1", 0),
            peers: [.init(slot: 1, host: "127.0.0.1", port: try Socket.localPort(mute))], key: .random(),
            options: options)
        for index in 0..<4 { try node.broadcast([UInt8(index)]) }
        #expect(throws: CausalNodeError(.full)) { try node.broadcast([4]) }
        let start = ContinuousClock.now
        await #expect(throws: CausalNodeError(.full)) {
            try await node.broadcast([4], waitingUntil: start + .milliseconds(100))
        }
        #expect(ContinuousClock.now - start >= .milliseconds(100))
        #expect(node.statistics.unacked == 4)
        #expect(node.statistics.sent == 4)
        await node.close()
    }

    @Test("limits, closing and statistics after the close", .timeLimit(.minutes(1)))
    func closing() async throws {
        var options = CausalNode.Options()
        options.maxPayload = 16
        let node = try CausalNode(
            slot: 0, width: 1, listen: ("127.0.0.1", 0), peers: [], key: .random(), options: options)
        #expect(throws: CausalNodeError(.tooLarge)) { try node.broadcast([UInt8](repeating: 0, count: 17)) }
        try node.broadcast([UInt8](repeating: 1, count: 16), emergency: .critical)
        try node.broadcast(AnySequenceOfBytes(count: 3).bytes)  // a non-contiguous collection
        // The raw-buffer overload: the same limits, the bytes copied.
        try [UInt8]([7, 8, 9]).withUnsafeBytes { try node.broadcast($0, emergency: .high, kind: 5) }
        try [UInt8](repeating: 0, count: 17).withUnsafeBytes { bytes in
            #expect(throws: CausalNodeError(.tooLarge)) { try node.broadcast(bytes) }
        }
        var deliveries = node.deliveries.makeAsyncIterator()
        #expect(await deliveries.next()?.level == .critical)
        #expect(await deliveries.next()?.payload == [0, 1, 2])
        let raw = await deliveries.next()
        #expect(raw?.payload == [7, 8, 9] && raw?.level == .high && raw?.kind == 5)
        await node.close()
        await node.close()
        #expect(throws: CausalNodeError(.closed)) { try node.broadcast([1]) }
        #expect(throws: CausalNodeError.self) { try node.addPeer(.init(slot: 1, host: "127.0.0.1", port: 9)) }
        #expect(node.statistics.delivered == 3)
        #expect(node.statistics.sent == 3)
        #expect(try await node.clock() == VectorClock([3]))
        #expect(await deliveries.next() == nil)
    }

    @Test("a listen address in use is a .system error naming it", .timeLimit(.minutes(1)))
    func addressInUse() async throws {
        let taken = try Socket.listen()
        defer { close(taken) }
        let port = try Socket.localPort(taken)
        #expect {
            _ = try CausalNode(slot: 0, width: 1, listen: ("127.0.0.1", port), peers: [], key: .random())
        } throws: { error in
            guard let error = error as? CausalNodeError else { return false }
            return error.reason == .system && error.description.contains("127.0.0.1:\(port)")
        }
    }

    @Test(
        "bad arguments are refused before anything starts",
        arguments: [
            ("slot outside the width", 2, 2, [CausalNode.Peer](), CausalNode.Options()),
            (
                "peer slot twice", 0, 3,
                [.init(slot: 1, host: "127.0.0.1", port: 1), .init(slot: 1, host: "127.0.0.1", port: 2)], .init()
            ),
            ("peer with own slot", 0, 2, [.init(slot: 0, host: "127.0.0.1", port: 1)], .init()),
            ("peer past the width", 0, 2, [.init(slot: 2, host: "127.0.0.1", port: 1)], .init()),
            ("host name", 0, 2, [.init(slot: 1, host: "localhost", port: 1)], .init()),
            ("port 0", 0, 2, [.init(slot: 1, host: "127.0.0.1", port: 0)], .init()),
            ("port 70000", 0, 2, [.init(slot: 1, host: "::1", port: 70000)], .init()),
            ("zero heartbeat", 0, 1, [], .init(heartbeat: .zero)),
            ("negative timeout", 0, 1, [], .init(timeout: .milliseconds(-5))),
            ("reconnect range reversed", 0, 1, [], .init(reconnectMin: .seconds(3), reconnectMax: .seconds(1))),
            ("zero send window", 0, 1, [], .init(sendWindow: 0)),
            ("tiny frames", 0, 1, [], .init(maxFrame: 8)),
        ] as [(String, Int, Int, [CausalNode.Peer], CausalNode.Options)])
    func invalidArguments(name: String, slot: Int, width: Int, peers: [CausalNode.Peer], options: CausalNode.Options)
        throws
    {
        #expect(
            Comment(rawValue: name),
            performing: {
                _ = try CausalNode(
                    slot: slot, width: width, listen: ("127.0.0.1", 0), peers: peers, key: .random(), options: options)
            },
            throws: { error in
                guard let error = error as? CausalNodeError else { return false }
                return error.reason == .invalid && error.detail != nil
            })
    }

    @Test("an IPv6 loopback listener works", .timeLimit(.minutes(1)))
    func ipv6() async throws {
        let node: CausalNode
        do {
            node = try CausalNode(slot: 0, width: 1, listen: ("::1", 0), peers: [], key: .random())
        } catch let error where error.reason == .system {
            return  // no IPv6 on this machine
        }
        #expect(node.port > 0)
        await node.close()
    }
}

/// Three bytes 0, 1, 2 as a collection without contiguous storage.
struct AnySequenceOfBytes {
    let count: Int
    var bytes: LazyMapCollection<Range<Int>, UInt8> { (0..<count).lazy.map { UInt8($0) } }
}
