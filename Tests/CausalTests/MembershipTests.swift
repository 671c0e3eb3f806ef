import Causal
import Foundation
import Testing

@Suite("Membership")
struct MembershipTests {
    @Test("members take dense slots in join order; rejoining keeps the slot")
    func slots() {
        var members = Membership()
        #expect(members.count == 0)
        #expect(members.add("b") == 0)
        #expect(members.add("a") == 1)
        #expect(members.add("c") == 2)
        #expect(members.add("a") == 1)
        #expect(members.count == 3)
        #expect(members.ids == ["b", "a", "c"])
        #expect(members.slot(of: "c") == 2)
        #expect(members.slot(of: "z") == nil)
        #expect(members.id(at: 0) == "b")
        #expect(members.id(at: 3) == nil)
        #expect(members.id(at: -1) == nil)
        #expect(Membership(["x", "y", "x"]).ids == ["x", "y"])
    }

    @Test("named form and clock round-trip")
    func namedRoundTrip() throws {
        var members = Membership(["n1", "n2", "n3"])
        let clock: VectorClock = [4, 0, 2]
        let named = try members.named(clock)
        #expect(named == ["n1": 4, "n2": 0, "n3": 2])
        #expect(try clock.named(in: members) == named)
        #expect(try members.clock(fromKnown: named).entries == [4, 0, 2])
        #expect(members.clock(from: named).entries == [4, 0, 2])
        #expect(members.count == 3)
    }

    @Test("a narrower clock names every member; a wider one may carry only zeros past the members")
    func widths() throws {
        let members = Membership(["n1", "n2", "n3"])
        #expect(try members.named([7]) == ["n1": 7, "n2": 0, "n3": 0])
        #expect(try members.named([1, 2, 3, 0, 0]) == ["n1": 1, "n2": 2, "n3": 3])
        #expect(throws: CausalError.nonzeroEntryOutsideMembership(slot: 4, value: 9)) {
            try members.named([1, 2, 3, 0, 9])
        }
        #expect(throws: CausalError.nonzeroEntryOutsideMembership(slot: 0, value: 1)) {
            try Membership().named([1])
        }
    }

    @Test("missing members read 0")
    func missingMembers() throws {
        let members = Membership(["n1", "n2", "n3"])
        #expect(try members.clock(fromKnown: ["n2": 5]).entries == [0, 5, 0])
        #expect(try members.clock(fromKnown: [:]).entries == [0, 0, 0])
    }

    @Test("the throwing variant names the unknown id")
    func unknownIds() {
        let members = Membership(["n1"])
        #expect(throws: CausalError.unknownNode("n9")) {
            try members.clock(fromKnown: ["n1": 1, "n9": 2])
        }
        #expect(throws: CausalError.unknownNode("a")) {
            try members.clock(fromKnown: ["z": 1, "a": 2, "m": 3])
        }
    }

    @Test("unknown ids join, in sorted order, so a clock from a larger group still maps")
    func unknownIdsJoin() {
        var members = Membership(["n1"])
        let clock = members.clock(from: ["n1": 1, "zeta": 3, "alpha": 2])
        #expect(members.ids == ["n1", "alpha", "zeta"])
        #expect(clock.entries == [1, 2, 3])
    }

    @Test("named clocks encode as a JSON object keyed by node id")
    func namedJSON() throws {
        let members = Membership(["node-a", "node-b"])
        let data = try JSONEncoder().encode(try members.named([3, 1]))
        let decoded = try JSONDecoder().decode([String: UInt64].self, from: data)
        #expect(try members.clock(fromKnown: decoded) == [3, 1])
        let wire = try JSONDecoder().decode([String: UInt64].self, from: Data(#"{"node-b": 6}"#.utf8))
        #expect(try members.clock(fromKnown: wire).entries == [0, 6])
    }

    @Test("Membership encodes as its ids in slot order and rejects duplicates")
    func codable() throws {
        let members = Membership(["b", "a"])
        let data = try JSONEncoder().encode(members)
        #expect(String(decoding: data, as: UTF8.self) == #"["b","a"]"#)
        #expect(try JSONDecoder().decode(Membership.self, from: data) == members)
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(Membership.self, from: Data(#"["a","a"]"#.utf8))
        }
    }

    @Test("equal memberships hold the same ids in the same order")
    func equality() {
        #expect(Membership(["a", "b"]) == Membership(["a", "b"]))
        #expect(Membership(["a", "b"]) != Membership(["b", "a"]))
        #expect(Membership(["a", "b"]).hashValue == Membership(["a", "b", "a"]).hashValue)
    }

    @Test("errors describe the failing value")
    func errorDescriptions() {
        #expect(CausalError.unknownNode("n9").description.contains("n9"))
        let outside = CausalError.nonzeroEntryOutsideMembership(slot: 4, value: 9).description
        #expect(outside.contains("4") && outside.contains("9"))
    }
}
