import Causal
import Foundation
import Testing
import UCP

@Suite("JobInfo and the other UCP models")
struct JobInfoTests {
    @Test("an address with a port outside 0...65535 is refused where it is read", arguments: [65536, -1, Int.max])
    func addressPort(port: Int) throws {
        let error = #expect(throws: ModelDecodingError.self) {
            try UCPJSON.decode(Address.self, from: Data(#"{"host": "127.0.0.1", "port": \#(port)}"#.utf8))
        }
        #expect(error?.field == "port")
        let job = #"{"wasm_bin": "x.wasm", "result_addr": {"host": "127.0.0.1", "port": \#(port)}}"#
        #expect(throws: (any Error).self) { try UCPJSON.decode(JobInfo.self, from: Data(job.utf8)) }
        #expect(try UCPJSON.decode(Address.self, from: Data(#"{"host": "h", "port": 65535}"#.utf8)).port == 65535)
    }

    @Test("ids are written as UCP writes them: the lowercased uuidString")
    func ucpString() throws {
        let id = try #require(UUID(uuidString: "E621E1F8-C36C-495A-93FC-0C247A3E6E5F"))
        #expect(id.ucpString == "e621e1f8-c36c-495a-93fc-0c247a3e6e5f")
        #expect(UCPPaths.job(id) == "/job/e621e1f8-c36c-495a-93fc-0c247a3e6e5f")
    }

    /// What UCP's client sends after `transform_job_info_broker` for a job with a binary, stdin,
    /// one input file, arguments and results (pydantic's `model_dump_json`).
    static let fullClientBody = """
        {"wasm_bin":["3f1c2a4e-0d7b-4c36-9a53-2b8f6f0d1e77/wordcount.wasm","wordcount.wasm"],\
        "wasm_bin_is_named":false,\
        "stdin":["3f1c2a4e-0d7b-4c36-9a53-2b8f6f0d1e77/stdin_input.txt","stdin_input.txt"],\
        "stdin_is_named":false,\
        "job_data":{"3f1c2a4e-0d7b-4c36-9a53-2b8f6f0d1e77/infile.txt":"infile.txt"},\
        "named_data":{"shared/model.bin":"model.bin"},\
        "directories":["out"],\
        "args":["/infile.txt","--verbose"],\
        "env":{"LANG":"C"},\
        "zip_results":{"/out":"results"},\
        "named_results":{"/out/summary.txt":"summaries/3f1c.txt"},\
        "capabilities":{"memory":104857600,"disk":0,"cpu_load":100.0,"cpu_cores":1,"cpu_freq":0.0,\
        "has_battery":true,"power":0.0},\
        "result_addr":{"host":"","port":0},\
        "delete":true}
        """

    @Test("decodes a full body as UCP's client sends it")
    func decodesFullBody() throws {
        let info = try UCPJSON.decode(JobInfo.self, from: Data(Self.fullClientBody.utf8))
        #expect(
            info.wasmBin
                == DataReference(name: "3f1c2a4e-0d7b-4c36-9a53-2b8f6f0d1e77/wordcount.wasm", path: "wordcount.wasm"))
        #expect(info.wasmBinIsNamed == false)
        #expect(info.stdin.path == "stdin_input.txt")
        #expect(info.jobData == ["3f1c2a4e-0d7b-4c36-9a53-2b8f6f0d1e77/infile.txt": "infile.txt"])
        #expect(info.namedData == ["shared/model.bin": "model.bin"])
        #expect(info.directories == ["out"])
        #expect(info.args == ["/infile.txt", "--verbose"])
        #expect(info.env == ["LANG": "C"])
        #expect(info.zipResults == ["/out": "results"])
        #expect(info.namedResults == ["/out/summary.txt": "summaries/3f1c.txt"])
        #expect(info.capabilities.memory == 104_857_600)
        #expect(info.resultAddr == Address())
        #expect(info.delete)
        #expect(info.emergency == .low)
    }

    @Test("only wasm_bin is required; every other field takes UCP's default")
    func defaults() throws {
        let info = try UCPJSON.decode(JobInfo.self, from: Data(#"{"wasm_bin": "prog.wasm"}"#.utf8))
        #expect(info.wasmBin == DataReference(name: "prog.wasm"))
        #expect(info.wasmBin.path == nil)
        #expect(info.wasmBinIsNamed == false)
        #expect(info.stdin == DataReference(name: "", path: ""))
        #expect(info.stdin.isEmpty)
        #expect(info.stdinIsNamed == false)
        #expect(info.jobData.isEmpty && info.namedData.isEmpty && info.namedResults.isEmpty && info.env.isEmpty)
        #expect(info.directories.isEmpty && info.args.isEmpty)
        #expect(info.zipResults == ["/": "/"])
        #expect(info.capabilities == Capabilities())
        #expect(info.resultAddr == Address(host: "", port: 0))
        #expect(info.delete == true)
        #expect(info.emergency == .low)
        #expect(info == JobInfo(wasmBin: DataReference(name: "prog.wasm")))
    }

    @Test("encodes every UCP field in snake_case, plus emergency")
    func encodedKeys() throws {
        let data = try UCPJSON.encode(JobInfo(wasmBin: DataReference(name: "a.wasm"), emergency: .high))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(
            Set(object.keys) == [
                "wasm_bin", "wasm_bin_is_named", "stdin", "stdin_is_named", "job_data", "named_data",
                "directories", "args", "env", "zip_results", "named_results", "capabilities", "result_addr",
                "delete", "emergency",
            ])
        #expect(object["wasm_bin"] as? String == "a.wasm")
        #expect(object["stdin"] as? [String] == ["", ""])
        #expect(object["zip_results"] as? [String: String] == ["/": "/"])
        #expect(object["emergency"] as? String == "HIGH")
        let caps = try #require(object["capabilities"] as? [String: Any])
        #expect(Set(caps.keys) == ["memory", "disk", "cpu_load", "cpu_cores", "cpu_freq", "has_battery", "power"])
        let address = try #require(object["result_addr"] as? [String: Any])
        #expect(Set(address.keys) == ["host", "port"])
    }

    @Test("round-trips, keeping a bare name a name and a pair a pair")
    func roundTrip() throws {
        let original = try UCPJSON.decode(JobInfo.self, from: Data(Self.fullClientBody.utf8))
        let again = try UCPJSON.decode(JobInfo.self, from: try UCPJSON.encode(original))
        #expect(again == original)
        let bare = JobInfo(wasmBin: DataReference(name: "x.wasm"), stdin: DataReference(name: "in.txt"))
        let text = String(decoding: try UCPJSON.encode(bare), as: UTF8.self)
        #expect(text.contains(#""wasm_bin":"x.wasm""#))
        #expect(text.contains(#""stdin":"in.txt""#))
    }

    @Test("emergency accepts any case and numbers, and rejects unknown levels")
    func emergency() throws {
        for (text, level) in [(#""critical""#, EmergencyLevel.critical), (#"3"#, .high), (#""MEDIUM""#, .medium)] {
            let info = try UCPJSON.decode(JobInfo.self, from: Data(#"{"wasm_bin":"a","emergency":\#(text)}"#.utf8))
            #expect(info.emergency == level)
        }
        #expect(throws: ModelDecodingError.self) {
            try UCPJSON.decode(JobInfo.self, from: Data(#"{"wasm_bin":"a","emergency":"urgent"}"#.utf8))
        }
    }

    @Test(
        "rejects wrong types with an error that names the field",
        arguments: [
            (#"{"wasm_bin": 5}"#, "wasm_bin"),
            (#"{"wasm_bin": ["a"]}"#, "wasm_bin"),
            (#"{"wasm_bin": ["a", "b", "c"]}"#, "wasm_bin"),
            (#"{"wasm_bin": "a", "delete": "yes"}"#, "delete"),
            (#"{"wasm_bin": "a", "args": "x"}"#, "args"),
            (#"{"wasm_bin": "a", "env": {"A": 1}}"#, "env.A"),
            (#"{"wasm_bin": "a", "capabilities": {"memory": "lots"}}"#, "capabilities.memory"),
            (#"{"wasm_bin": "a", "result_addr": {"port": "80"}}"#, "result_addr.port"),
            (#"{"wasm_bin": "a", "stdin": {"name": "x"}}"#, "stdin"),
            (#"{"stdin": "x"}"#, "wasm_bin"),
        ])
    func rejectsWrongTypes(body: String, field: String) throws {
        let error = try #require(throws: ModelDecodingError.self) {
            try UCPJSON.decode(JobInfo.self, from: Data(body.utf8))
        }
        #expect(error.model == "JobInfo")
        #expect(error.field == field)
        #expect(error.description.contains("\"\(field)\""))
    }

    @Test("a body that is not JSON is refused as such")
    func notJSON() throws {
        let error = try #require(throws: ModelDecodingError.self) {
            try UCPJSON.decode(JobInfo.self, from: Data("wasm_bin=a".utf8))
        }
        #expect(error.field == "")
    }

    @Test("Address and Capabilities default every missing field")
    func partialModels() throws {
        #expect(try UCPJSON.decode(Address.self, from: Data("{}".utf8)) == Address(host: "", port: 0))
        #expect(try UCPJSON.decode(Address.self, from: Data(#"{"host":"10.0.0.2"}"#.utf8)) == Address(host: "10.0.0.2"))
        let caps = try UCPJSON.decode(Capabilities.self, from: Data(#"{"memory": 1024, "cpu_load": 12.5}"#.utf8))
        #expect(
            caps
                == Capabilities(
                    memory: 1024, disk: 0, cpuLoad: 12.5, cpuCores: 1, cpuFreq: 0, hasBattery: true, power: 0))
        #expect(try UCPJSON.decode(Capabilities.self, from: Data(#"{"cpu_load": 50}"#.utf8)).cpuLoad == 50)
    }

    @Test("ExecutorRecord decodes a registration's executor and encodes the id lowercased")
    func executorRecord() throws {
        let body = """
            {"address":{"host":"127.0.0.1","port":8001},"id":"5A0E3C1F-8B2D-4E6F-9A7B-0C1D2E3F4A5B",\
            "cur_caps":{"memory":8000000000,"disk":50000000000,"cpu_load":12.5,"cpu_cores":2,"cpu_freq":2445.4,\
            "has_battery":false,"power":100},"last_update":1752000000.25}
            """
        let record = try UCPJSON.decode(ExecutorRecord.self, from: Data(body.utf8))
        #expect(record.address == Address(host: "127.0.0.1", port: 8001))
        #expect(record.id == UUID(uuidString: "5a0e3c1f-8b2d-4e6f-9a7b-0c1d2e3f4a5b"))
        #expect(record.curCaps.cpuCores == 2 && record.curCaps.hasBattery == false)
        #expect(record.lastUpdate == 1_752_000_000.25)
        let text = String(decoding: try UCPJSON.encode(record), as: UTF8.self)
        #expect(text.contains(#""id":"5a0e3c1f-8b2d-4e6f-9a7b-0c1d2e3f4a5b""#))
        #expect(text.contains(#""cur_caps""#) && text.contains(#""last_update""#))
        #expect(throws: ModelDecodingError.self) {
            try UCPJSON.decode(ExecutorRecord.self, from: Data(#"{"id":"not-a-uuid"}"#.utf8))
        }
    }
}
