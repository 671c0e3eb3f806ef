import CCausal
import Causal
import Foundation
import Testing

@Suite("EmergencyLevel")
struct EmergencyLevelTests {
    @Test(
        "parses names in any case, numbers, and surrounding whitespace",
        arguments: [
            ("low", EmergencyLevel.low), ("LOW", .low), ("Low", .low), ("1", .low),
            ("medium", .medium), ("MEDIUM", .medium), ("mEdIuM", .medium), ("2", .medium),
            ("high", .high), (" High ", .high), ("\tHIGH\n", .high), ("3", .high),
            ("critical", .critical), ("CRITICAL", .critical), (" 4 ", .critical), ("04", .critical),
        ])
    func parsing(text: String, level: EmergencyLevel) throws {
        #expect(try EmergencyLevel(parsing: text) == level)
    }

    @Test(
        "rejects anything else instead of reading it as LOW",
        arguments: ["", " ", "5", "0", "urgent", "-1", "+1", "1.0", "lo w", "LOWW", "2 3", "255", "256"])
    func rejection(text: String) {
        #expect(throws: CausalError.unknownEmergencyLevel(text)) {
            try EmergencyLevel(parsing: text)
        }
    }

    @Test("orders by urgency")
    func ordering() {
        #expect(EmergencyLevel.low < .medium)
        #expect(EmergencyLevel.medium < .high)
        #expect(EmergencyLevel.high < .critical)
        #expect(EmergencyLevel.allCases == [.low, .medium, .high, .critical])
        #expect(EmergencyLevel.allCases.sorted(by: >) == [.critical, .high, .medium, .low])
        #expect(EmergencyLevel.allCases.max() == .critical)
    }

    @Test("raw values are the C core's level numbers")
    func rawValues() {
        #expect(Int(EmergencyLevel.low.rawValue) == Int(CC_LEVEL_LOW))
        #expect(Int(EmergencyLevel.medium.rawValue) == Int(CC_LEVEL_MEDIUM))
        #expect(Int(EmergencyLevel.high.rawValue) == Int(CC_LEVEL_HIGH))
        #expect(Int(EmergencyLevel.critical.rawValue) == Int(CC_LEVEL_CRITICAL))
        #expect(EmergencyLevel.allCases.count == Int(CC_LEVEL_COUNT))
    }

    @Test(
        "isCritical holds for HIGH and CRITICAL, and names are upper case",
        arguments: [
            (EmergencyLevel.low, false, "LOW"), (.medium, false, "MEDIUM"),
            (.high, true, "HIGH"), (.critical, true, "CRITICAL"),
        ])
    func criticalAndNames(level: EmergencyLevel, critical: Bool, name: String) throws {
        #expect(level.isCritical == critical)
        #expect(level.description == name)
        #expect(try EmergencyLevel(parsing: level.description) == level)
    }

    @Test("encodes as the upper-case name")
    func encoding() throws {
        let data = try JSONEncoder().encode([EmergencyLevel.low, .high])
        #expect(String(decoding: data, as: UTF8.self) == #"["LOW","HIGH"]"#)
    }

    @Test(
        "decodes a name or a number",
        arguments: [
            (#""HIGH""#, EmergencyLevel.high), (#""high""#, .high), ("3", .high), (#""3""#, .high),
            ("1", .low), (#""critical""#, .critical),
        ])
    func decoding(json: String, level: EmergencyLevel) throws {
        #expect(try JSONDecoder().decode(EmergencyLevel.self, from: Data(json.utf8)) == level)
    }

    @Test("decoding an unknown level fails", arguments: [#""urgent""#, "0", "5", "-1", #""""#, "null", "2.5", "{}"])
    func decodingUnknown(json: String) {
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(EmergencyLevel.self, from: Data(json.utf8))
        }
    }

    @Test(
        "an emergency context is critical when its level is HIGH or CRITICAL",
        arguments: [
            (EmergencyLevel.low, false), (.medium, false), (.high, true), (.critical, true),
        ])
    func contextIsCritical(level: EmergencyLevel, critical: Bool) {
        #expect(EmergencyContext(type: "fire", level: level, location: "B2").isCritical == critical)
        #expect(EmergencyContext(type: "flood", level: level).isCritical == critical)
    }

    @Test("an emergency context round-trips through JSON with the level by name")
    func contextCodable() throws {
        let context = EmergencyContext(type: "fire", level: .critical, location: "hall B")
        let data = try JSONEncoder().encode(context)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: String]
        #expect(object == ["type": "fire", "level": "CRITICAL", "location": "hall B"])
        #expect(try JSONDecoder().decode(EmergencyContext.self, from: data) == context)
        let bare = try JSONDecoder().decode(
            EmergencyContext.self, from: Data(#"{"type": "flood", "level": "medium"}"#.utf8))
        #expect(bare == EmergencyContext(type: "flood", level: .medium, location: nil))
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(EmergencyContext.self, from: Data(#"{"type": "flood", "level": "?"}"#.utf8))
        }
    }
}
