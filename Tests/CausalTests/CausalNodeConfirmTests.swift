import Causal
import Testing

/// `Options.confirmsDeliveries` and `confirm(_:)`: with a state folder, a delivery counts as
/// handed over only once confirmed, and a restart delivers again what was not.
@Suite("CausalNode hand-off")
struct CausalNodeConfirmTests {
    @Test(
        "what was not confirmed is delivered again after a restart, own broadcasts included; what was is not",
        .timeLimit(.minutes(1)))
    func unconfirmedComeAgain() async throws {
        try await withCleanup { cleanup in
            let folder = try TemporaryFolder()
            cleanup.add { folder.remove() }
            let key = ClusterKey.random()
            var options = quickOptions
            options.stateDirectory = folder.file("solo")
            options.confirmsDeliveries = true
            let deadline = ContinuousClock.now + .seconds(30)

            // Ten broadcasts, all delivered into the stream; the application confirms four.
            let first = try CausalNode(
                slot: 0, width: 1, listen: ("127.0.0.1", 0), peers: [], key: key, options: options)
            for index in 0..<10 {
                try first.broadcast(
                    testPayload(sender: 0, index: index), emergency: testLevel(index), kind: UInt32(index))
            }
            var seen: [CausalMessage] = []
            for await message in first.deliveries {
                seen.append(message)
                if seen.count <= 4 { try first.confirm(message) }
                if seen.count == 10 { break }
            }
            await first.close()
            #expect(first.statistics.delivered == 10)
            #expect(throws: CausalNodeError(.closed)) { try first.confirm(seen[9]) }

            // The six it did not confirm come again, in order, before what it broadcasts now.
            let second = try ObservedNode(slot: 0, width: 1, peers: [], key: key, options: options)
            cleanup.add { await second.node.close() }
            try second.node.broadcast(testPayload(sender: 0, index: 10), emergency: testLevel(10), kind: 10)
            #expect(await second.waitForDeliveries(7, until: deadline))
            #expect(second.delivered.values.map(\.sequence) == Array(5...11))
            #expect(second.delivered.values.map(\.payload) == (4...10).map { testPayload(sender: 0, index: $0) })
            #expect(second.delivered.values.map(\.level) == (4...10).map { testLevel($0) })
            #expect(second.delivered.values.map(\.kind) == (4...10).map { UInt32($0) })

            // Confirming the last delivery hands over everything before it too.
            try second.node.confirm(try #require(second.delivered.values.last))
            await second.node.close()
            let third = try ObservedNode(slot: 0, width: 1, peers: [], key: key, options: options)
            cleanup.add { await third.node.close() }
            try third.node.broadcast(testPayload(sender: 0, index: 11))
            #expect(await third.waitForDeliveries(1, until: deadline))
            #expect(third.delivered.values.map(\.sequence) == [12])
        }
    }

    @Test("confirm throws .invalid on a node started without confirmsDeliveries", .timeLimit(.minutes(1)))
    func confirmWithoutOption() async throws {
        let node = try CausalNode(slot: 0, width: 1, listen: ("127.0.0.1", 0), peers: [], key: .random())
        try node.broadcast([1])
        var deliveries = node.deliveries.makeAsyncIterator()
        let message = try #require(await deliveries.next())
        do {
            try node.confirm(message)
            Issue.record("confirm did not throw")
        } catch {
            #expect(error.reason == .invalid)
        }
        await node.close()
    }
}
