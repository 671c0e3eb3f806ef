import Causal
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A `ucp node` member killed with SIGKILL at random points of its input bursts and
/// restarted on its state folder, again and again, while its two peers keep running.
///
/// The README promises that a restarted member never loses a message: whatever it had not yet
/// handed to the application when it died (its own broadcasts included) is delivered again.
/// So across its lives the victim must print every message its peers print; it may print some
/// twice (what it had printed after its last state write), never one out of causal order, and
/// a sequence number keeps one meaning.
@Suite("ucp node killed and restarted at random points", .serialized)
struct NodeRestartTests {
    static let ids = ["A", "B", "C"]
    static let victim = "C"
    static let rounds = 12
    /// Lines the victim reads at once in each round, and lines each survivor reads.
    static let burst = 150
    static let survivorBurst = 20

    /// How a round picks the moment of the kill.
    enum KillPoint: CustomStringConvertible {
        /// Right after its burst was written to its standard input.
        case atOnce
        /// This long after the burst: the offset is the fault, not a wait for anything.
        case after(Duration)
        /// Once it has printed this many more lines.
        case printed(Int)

        var description: String {
            switch self {
            case .atOnce: "at once"
            case .after(let delay): "after \(delay)"
            case .printed(let count): "after \(count) more lines"
            }
        }

        static func random(using random: inout HistoryRandom) -> KillPoint {
            switch Int.random(in: 0..<4, using: &random) {
            case 0: .atOnce
            case 1, 2: .after(.microseconds(Int.random(in: 0...30_000, using: &random)))
            default: .printed(Int.random(in: 1...NodeRestartTests.burst, using: &random))
            }
        }
    }

    @Test(
        "a member killed at random points of its bursts prints, across its lives, every message its peers print",
        .timeLimit(.minutes(3)))
    func killAtRandomPoints() async throws {
        let seed =
            ProcessInfo.processInfo.environment["NODE_RESTART_SEED"].flatMap { UInt64($0) }
            ?? .random(in: 1...UInt64.max)
        var random = HistoryRandom(seed: seed)
        let binary = try NodeProcessTests.binary()
        let folder = try TemporaryFolder("ucp-restart")
        defer { folder.remove() }
        let group = try NodeProcessGroup.sharingOneKey(binary: binary, ids: Self.ids, folder: folder)
        try await withCleanup { cleanup in
            cleanup.add { await group.stop() }
            for id in Self.ids { try await group.start(id, stateful: true) }
            let deadline = ContinuousClock.now + .seconds(150)
            var lives: [ChildProcess] = [group[Self.victim]]
            var points: [String] = []
            var survivorLines = 0

            for round in 0..<Self.rounds {
                let victim = group[Self.victim]
                let printedBefore = victim.output.values.count
                for index in 0..<Self.burst { victim.send("\(Self.victim).\(round).\(index)") }
                for id in Self.ids where id != Self.victim {
                    for index in survivorLines..<survivorLines + Self.survivorBurst {
                        group[id].send("\(id)-\(index)")
                    }
                }
                survivorLines += Self.survivorBurst
                let point = KillPoint.random(using: &random)
                points.append("\(point)")
                switch point {
                case .atOnce: break
                case .after(let delay): try await Task.sleep(for: delay)
                case .printed(let count):
                    _ = await victim.output.wait(forCount: printedBefore + count, until: .now + .seconds(5))
                }
                victim.signal(SIGKILL)
                #expect(await victim.wait(until: deadline) == 128 + SIGKILL, "seed \(seed), round \(round)")
                lives.append(try await group.start(Self.victim, stateful: true))
            }

            // A last line from each member: once every member printed all three, every member
            // has delivered everything the others sent before them (one sender's messages are
            // delivered in order), so the outputs are complete.
            for id in Self.ids { group[id].send(id == Self.victim ? "\(id).final" : "\(id)-\(survivorLines)") }
            let finals: Set<String> = ["A-\(survivorLines)", "B-\(survivorLines)", "\(Self.victim).final"]
            for id in Self.ids {
                let complete = await group[id].output.wait(until: deadline) { lines in
                    finals.isSubset(of: lines.compactMap { PrintedDelivery($0)?.text })
                }
                #expect(complete, "seed \(seed): \(id) did not print every member's last line")
            }

            // The survivors: everything once, in causal order, the same messages.
            let reference = NodeProcessGroup.deliveries(of: group["A"])
            for id in Self.ids where id != Self.victim {
                let printed = NodeProcessGroup.deliveries(of: group[id])
                #expect(Set(printed).count == printed.count, "seed \(seed): \(id) printed a line twice")
                #expect(causalViolations(of: printed.map { $0.message(ids: Self.ids) }, width: 3) == [], "\(id)")
                #expect(Set(printed) == Set(reference), "seed \(seed): A and \(id) printed different messages")
                for line in printed where line.sender != Self.victim {
                    #expect(line.text == "\(line.sender)-\((line.clock[line.sender] ?? 0) - 1)", "\(id): \(line)")
                }
                #expect(printed.filter { $0.sender == id }.count == survivorLines + 1, "\(id) lost own lines")
            }

            // The victim, life by life: each continues at or before where the lives before it
            // stopped printing, in causal order, and prints nothing twice within one life.
            var printedSoFar = [UInt64](repeating: 0, count: Self.ids.count)
            var union: Set<PrintedDelivery> = []
            var repeated = 0
            for (number, life) in lives.enumerated() {
                let printed = NodeProcessGroup.deliveries(of: life)
                #expect(printed.allSatisfy { $0.sender != "?" }, "seed \(seed): life \(number) printed other lines")
                #expect(Set(printed).count == printed.count, "seed \(seed): life \(number) printed a line twice")
                let restored = Self.ids.enumerated().map { slot, id in
                    printed.filter { $0.sender == id }.map { ($0.clock[id] ?? 1) - 1 }.min() ?? printedSoFar[slot]
                }
                #expect(
                    zip(restored, printedSoFar).allSatisfy { $0 <= $1 },
                    "seed \(seed): life \(number) starts at \(restored), after a gap: printed \(printedSoFar) before")
                let problems = causalViolations(
                    of: printed.map { $0.message(ids: Self.ids) }, width: Self.ids.count, start: restored)
                #expect(problems == [], "seed \(seed): life \(number)")
                repeated += printed.filter { union.contains($0) }.count
                union.formUnion(printed)
                for line in printed {
                    let slot = Self.ids.firstIndex(of: line.sender)!
                    printedSoFar[slot] = max(printedSoFar[slot], line.clock[line.sender] ?? 0)
                }
            }
            let lost = Set(reference).subtracting(union)
            let lostOwn = lost.filter { $0.sender == Self.victim }.count
            #expect(
                lost.isEmpty,
                """
                seed \(seed): the victim never printed \(lost.count) of the \(reference.count) messages its peers \
                printed (\(lostOwn) of them its own), e.g. \(lost.sorted { $0.text < $1.text }.prefix(3)); \
                kill points: \(points)
                """)
            #expect(union == Set(reference), "seed \(seed): the victim printed messages its peers did not")
            // One meaning per sequence number: the victim's broadcasts across its lives.
            var texts: [UInt64: String] = [:]
            for line in union.union(reference) where line.sender == Self.victim {
                let sequence = line.clock[Self.victim] ?? 0
                #expect(
                    texts.updateValue(line.text, forKey: sequence).map { $0 == line.text } ?? true,
                    "seed \(seed): sequence \(sequence) of \(Self.victim) printed with two texts")
            }
            FileHandle.standardError.write(
                Data(
                    "[restart] seed \(seed): \(Self.rounds) kills, \(union.count) messages, \(repeated) printed again after a restart\n"
                        .utf8))

            for id in Self.ids { group[id].closeInput() }
            for id in Self.ids {
                let code = await group[id].wait(until: .now + .seconds(20))
                #expect(code == 0, "\(id): \(group[id].errors.values.suffix(5))")
            }
        }
    }
}
