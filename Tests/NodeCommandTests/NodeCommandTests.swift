import Causal
import Foundation
import Testing

@testable import ucp

@Suite("ucp node options")
struct NodeCommandTests {
    // MARK: Addresses and peers

    @Test(
        "socket addresses",
        arguments: [
            ("127.0.0.1:7001", "127.0.0.1", 7001),
            ("[::1]:7002", "::1", 7002),
            ("[fe80::1:2]:1", "fe80::1:2", 1),
            ("10.0.0.255:65535", "10.0.0.255", 65535),
        ])
    func addresses(text: String, host: String, port: Int) throws {
        let address = try SocketAddress(parsing: text)
        #expect(address.host == host)
        #expect(address.port == port)
        #expect(address.description == text)
    }

    @Test(
        "bad socket addresses name the problem",
        arguments: [
            ("127.0.0.1", "HOST:PORT"),
            ("127.0.0.1:", "port"),
            ("127.0.0.1:0", "port \"0\""),
            ("127.0.0.1:65536", "65536"),
            ("127.0.0.1:-1", "\"-1\""),
            ("127.0.0.1:80x", "80x"),
            ("127.0.0.1:000007001", "000007001"),
            ("localhost:80", "not an IPv4 address"),
            ("1.2.3:80", "not an IPv4 address"),
            ("::1:7002", "brackets"),
            ("[::1]7002", "after \"]\""),
            ("[::1:7002", "unclosed"),
            ("[127.0.0.1]:80", "not an IPv6 address"),
        ])
    func badAddresses(text: String, mention: String) {
        #expect {
            try SocketAddress(parsing: text)
        } throws: { error in
            "\(error)".contains(mention) && "\(error)".contains(text)
        }
    }

    @Test("a listen address may use port 0")
    func listenAnyPort() throws {
        #expect(try SocketAddress(parsing: "127.0.0.1:0", allowAnyPort: true).port == 0)
    }

    @Test("peers: ID=HOST:PORT and ID@SLOT=HOST:PORT")
    func peers() throws {
        #expect(
            try PeerSpec(parsing: "B=127.0.0.1:7002")
                == PeerSpec(id: "B", address: SocketAddress(host: "127.0.0.1", port: 7002)))
        #expect(
            try PeerSpec(parsing: "node-2@5=[::1]:7002")
                == PeerSpec(id: "node-2", slot: 5, address: SocketAddress(host: "::1", port: 7002)))
    }

    @Test(
        "bad peers name the problem",
        arguments: [
            ("B", "ID=HOST:PORT"),
            ("=127.0.0.1:7002", "bad id"),
            ("B C=127.0.0.1:7002", "bad id"),
            ("B\"=127.0.0.1:7002", "bad id"),
            ("B@x=127.0.0.1:7002", "slot \"x\""),
            ("B@70000=127.0.0.1:7002", "slot \"70000\""),
            ("B=127.0.0.1:99999", "99999"),
            ("B=[::1]:0", "port \"0\""),
            ("B=example.org:80", "not an IPv4 address"),
        ])
    func badPeers(text: String, mention: String) {
        #expect {
            try PeerSpec(parsing: text)
        } throws: { error in
            "\(error)".contains(mention)
        }
    }

    // MARK: Slots

    @Test("slots are the positions of the sorted ids, the same for every member")
    func sortedSlots() throws {
        let setups = try ["C", "A", "B"].map { id in
            try NodeCommand.parse(
                ["--id", id, "--listen", "127.0.0.1:0", "--key-file", "k"]
                    + ["A", "B", "C"].filter { $0 != id }.flatMap { ["--peer", "\($0)=127.0.0.1:700\($0.count)"] }
            ).setup()
        }
        for setup in setups {
            #expect(setup.ids == ["A", "B", "C"])
            #expect(setup.width == 3)
            #expect(setup.slot == setup.ids.firstIndex(of: setup.id))
            for peer in setup.peers { #expect(peer.slot == setup.ids.firstIndex(of: peer.id)) }
        }
    }

    @Test("explicit slots: --slot and ID@SLOT for every peer; gaps allowed")
    func explicitSlots() throws {
        let setup = try NodeCommand.parse([
            "--id", "z", "--slot", "0", "--listen", "[::1]:7001", "--key-file", "k", "--peer", "a@3=127.0.0.1:7002",
        ]).setup()
        #expect(setup.slot == 0)
        #expect(setup.ids == ["z", nil, nil, "a"])
        #expect(setup.nodePeers == [CausalNode.Peer(slot: 3, host: "127.0.0.1", port: 7002)])
        #expect(setup.id(at: 1) == "#1")
    }

    @Test(
        "group errors",
        arguments: [
            (["--peer", "B=127.0.0.1:2", "--peer", "B=127.0.0.1:3"], "\"B\" names two members"),
            (["--peer", "A=127.0.0.1:2"], "\"A\" names two members"),
            (["--slot", "0", "--peer", "B=127.0.0.1:2"], "every peer its slot"),
            (["--peer", "B@1=127.0.0.1:2"], "--slot too"),
            (["--slot", "1", "--peer", "B@1=127.0.0.1:2"], "both have slot 1"),
            (["--slot", "70000"], "70000"),
            (["--heartbeat-ms", "0"], "--heartbeat-ms"),
            (["--timeout-ms=-1"], "--timeout-ms"),
        ])
    func groupErrors(extra: [String], mention: String) throws {
        let command = try NodeCommand.parse(["--id", "A", "--listen", "127.0.0.1:0", "--key-file", "k"] + extra)
        #expect {
            try command.setup()
        } throws: { error in
            "\(error)".contains(mention)
        }
    }

    @Test(
        "missing settings are named",
        arguments: [
            (["--listen", "127.0.0.1:0", "--key-file", "k"], "--id"),
            (["--id", "A", "--key-file", "k"], "--listen"),
            (["--id", "A", "--listen", "127.0.0.1:0"], "--key-file"),
            (["--id", "", "--listen", "127.0.0.1:0", "--key-file", "k"], "bad id"),
        ])
    func missing(arguments: [String], mention: String) throws {
        let command = try NodeCommand.parse(arguments)
        #expect {
            try command.setup()
        } throws: { error in
            error is NodeOptionError && "\(error)".contains(mention)
        }
    }

    // MARK: Config files

    @Test("a config file supplies the settings; options override it; paths are relative to it")
    func configFile() throws {
        let folder = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("ucp-config-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("a.json").path
        try Data(
            """
            {"id": "A", "listen": "127.0.0.1:7001", "key_file": "k", "state_dir": "state",
             "peers": {"B": "127.0.0.1:7002", "C": "[::1]:7003"}, "heartbeat_ms": 250, "timeout_ms": 4000}
            """.utf8
        ).write(to: URL(fileURLWithPath: path))
        let setup = try NodeCommand.parse(["--config", path]).setup()
        #expect(setup.id == "A")
        #expect(setup.slot == 0)
        #expect(setup.listen == SocketAddress(host: "127.0.0.1", port: 7001))
        #expect(setup.keyFile == folder.appendingPathComponent("k").path)
        #expect(setup.options.stateDirectory == folder.appendingPathComponent("state").path)
        #expect(setup.options.heartbeat == .milliseconds(250))
        #expect(setup.options.timeout == .milliseconds(4000))
        #expect(setup.nodePeers.map(\.description) == ["1@127.0.0.1:7002", "2@[::1]:7003"])

        let overridden = try NodeCommand.parse([
            "--config", path, "--listen", "127.0.0.1:0", "--peer", "Z=127.0.0.1:9", "--heartbeat-ms", "50",
        ]).setup()
        #expect(overridden.listen.port == 0)
        #expect(overridden.ids == ["A", "Z"])
        #expect(overridden.options.heartbeat == .milliseconds(50))

        let broken = folder.appendingPathComponent("broken.json").path
        try Data(#"{"id": 5}"#.utf8).write(to: URL(fileURLWithPath: broken))
        #expect {
            try NodeCommand.parse(["--config", broken]).setup()
        } throws: { error in
            "\(error)".contains("broken.json") && "\(error)".contains("id")
        }
        #expect {
            try NodeCommand.parse(["--config", folder.appendingPathComponent("none.json").path]).setup()
        } throws: { error in
            "\(error)".contains("none.json")
        }
    }

    // MARK: Lines in and out

    @Test(
        "input lines: an emergency prefix sets the level",
        arguments: [
            ("hello", EmergencyLevel.low, "hello"),
            ("!high fire on floor 3", .high, "fire on floor 3"),
            ("!critical x", .critical, "x"),
            ("!CRITICAL x", .critical, "x"),
            ("!medium", .medium, ""),
            ("!bogus x", .low, "!bogus x"),
            ("!", .low, "!"),
            ("! high", .low, "! high"),
        ])
    func inputLines(line: String, level: EmergencyLevel, text: String) {
        let (parsedLevel, parsedText) = NodeSession.parse(line)
        #expect(parsedLevel == level)
        #expect(parsedText == text)
    }

    @Test("output lines: sender id, clock by id, level, text")
    func outputLines() throws {
        let setup = try NodeCommand.parse([
            "--id", "B", "--listen", "127.0.0.1:0", "--key-file", "k", "--peer", "A=127.0.0.1:2",
        ]).setup()
        let message = CausalMessage(sender: 0, clock: [1, 0], level: .high, payload: Array("hi there".utf8))
        #expect(NodeSession.format(message, setup: setup) == #"A {"A":1,"B":0} [HIGH] hi there"#)
        let grown = CausalMessage(sender: 0, clock: [2, 0, 4], payload: [])
        #expect(NodeSession.format(grown, setup: setup) == ##"A {"A":2,"B":0,"#2":4} [LOW] "##)
        #expect(
            NodeSession.describe(
                .refused(slot: nil, address: "127.0.0.1:5555", reason: "authentication failed", error: nil),
                setup: setup)
                == "refused 127.0.0.1:5555: authentication failed")
        #expect(NodeSession.describe(.peerDown(slot: 0, reason: "timeout"), setup: setup) == "peer A down: timeout")
    }
}
