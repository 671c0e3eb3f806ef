import Causal
import NetworkFaults
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `broadcast(_:waitingUntil:)` and `waitUntilAllAcknowledged(deadline:)`: woken by the node
/// when acknowledgements arrive, ended at once by cancellation and by the close.
@Suite("CausalNode waiting")
struct CausalNodeWaitingTests {
    @Test(
        "a broadcast waiting for room and a drain are woken by the acknowledgements",
        .timeLimit(.minutes(1)))
    func wokenByAcknowledgements() async throws {
        try await withCleanup { cleanup in
            let key = ClusterKey.random()
            var options = quickOptions
            options.sendWindow = 4
            // Slot 1 waits for slot 0 to dial it; until slot 0 starts, nothing is acknowledged.
            let b = try ObservedNode(
                slot: 1, width: 2, peers: [.init(slot: 0, host: "127.0.0.1", port: 9)], key: key, options: options)
            cleanup.add { await b.node.close() }
            for index in 0..<4 { try b.node.broadcast([UInt8(index)]) }
            #expect(throws: CausalNodeError(.full)) { try b.node.broadcast([4]) }
            #expect(await b.node.waitUntilAllAcknowledged(deadline: .now + .milliseconds(50)) == false)
            let deadline = ContinuousClock.now + .seconds(30)
            let fifth = Task { try await b.node.broadcast([4], waitingUntil: deadline) }
            let drained = Task { await b.node.waitUntilAllAcknowledged(deadline: deadline) }

            let a = try ObservedNode(
                slot: 0, width: 2, peers: [.init(slot: 1, host: "127.0.0.1", port: b.node.port)], key: key,
                options: options)
            cleanup.add { await a.node.close() }
            try await fifth.value
            #expect(await drained.value)
            #expect(await a.waitForDeliveries(5, until: deadline))
            #expect(await b.node.waitUntilAllAcknowledged(deadline: deadline))
            #expect(b.node.statistics.unacked == 0)
            #expect(a.delivered.values.map(\.payload) == [[0], [1], [2], [3], [4]])
            // With nothing sent, there is nothing to wait for.
            #expect(await a.node.waitUntilAllAcknowledged(deadline: .now))
        }
    }

    @Test("cancelling a wait ends it at once, and so does closing the node", .timeLimit(.minutes(1)))
    func cancelledAndClosed() async throws {
        // A peer that accepts connections but never answers: nothing is ever acknowledged.
        let mute = try Socket.listen()
        defer { close(mute) }
        var options = quickOptions
        options.sendWindow = 2
        let node = try CausalNode(
            slot: 0, width: 2, listen: ("127.0.0.1", 0),
            peers: [.init(slot: 1, host: "127.0.0.1", port: try Socket.localPort(mute))], key: .random(),
            options: options)
        for index in 0..<2 { try node.broadcast([UInt8(index)]) }
        let start = ContinuousClock.now
        let deadline = start + .seconds(30)

        let waiting = Task { try await node.broadcast([2], waitingUntil: deadline) }
        let draining = Task { await node.waitUntilAllAcknowledged(deadline: deadline) }
        waiting.cancel()
        draining.cancel()
        await #expect(throws: CausalNodeError(.full)) { try await waiting.value }
        #expect(await draining.value == false)

        let waitingAtClose = Task { try await node.broadcast([3], waitingUntil: deadline) }
        let drainingAtClose = Task { await node.waitUntilAllAcknowledged(deadline: deadline) }
        await node.close()
        await #expect(throws: CausalNodeError(.closed)) { try await waitingAtClose.value }
        #expect(await drainingAtClose.value == false)  // two broadcasts were never acknowledged
        #expect(await node.waitUntilAllAcknowledged(deadline: deadline) == false)
        #expect(ContinuousClock.now - start < .seconds(20))
        #expect(node.statistics.sent == 2)
    }
}
