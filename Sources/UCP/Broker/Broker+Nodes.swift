import Causal
import Foundation
import NIOHTTP1

extension Broker {
    /// Registers an executor after pinging `GET /ping` on each of `hosts` (the caller's own
    /// address first when listed, as UCP does) and checking that the answer names its id.
    ///
    /// - Throws: ``BrokerError`` 400 "Could not ping to verify" when no host answers with it, 400
    ///   for hosts or a port out of bounds (``checkRegistration(hosts:port:)``).
    public func registerExecutor(_ registration: ExecutorRegistration, remoteHost: String?) async throws {
        var executor = registration.executor
        try Self.checkRegistration(hosts: registration.hosts, port: executor.address.port)
        guard
            let host = await verify(
                hosts: registration.hosts, port: executor.address.port, id: executor.id, remoteHost: remoteHost)
        else {
            logger.error("could not ping executor \(executor.id.ucpString) to verify it is online")
            throw BrokerError(.badRequest, "Could not ping to verify")
        }
        let moment = now()
        executor.address.host = host
        executor.lastUpdate = moment
        try store.registerExecutor(
            ExecutorEntry(record: executor, hosts: registration.hosts, lastHeartbeat: moment),
            clock: clock.now().clock)
        logger.info(
            "executor registered",
            metadata: ["executor": "\(executor.id.ucpString)", "address": "\(executor.address)"])
        markDirty()
        if let notice = emergency.withLock({ $0.current }) {
            let entry = ExecutorEntry(record: executor, hosts: registration.hosts, lastHeartbeat: moment)
            Task { await self.push(notice, to: entry) }
        }
    }

    /// Records an executor's heartbeat and its current capabilities; a suspected executor is
    /// active again.
    ///
    /// - Throws: ``BrokerError`` 404 "No such executor" for an executor not registered (or
    ///   failed), which tells a UCP executor to register again.
    public func heartbeatExecutor(_ id: UUID, capabilities: Capabilities) throws {
        let known = try store.heartbeatExecutor(id, capabilities: capabilities, at: now())
        guard known else { throw BrokerError(.notFound, "No such executor") }
        noteHeartbeat(of: id)
        gauges.executorHeartbeats.increment()
        markDirty()
    }

    /// The number of live datastores, after failing silent ones.
    public func datastoreCount() throws -> Int {
        detectFailures()
        return try liveDatastores(at: now()).count
    }

    /// The number of live executors (suspected ones included), after failing silent ones (as UCP
    /// counts).
    public func executorCount() throws -> Int {
        detectFailures()
        return try liveExecutors(at: now()).count
    }

    /// Registers a datastore after the same ping check as an executor's.
    ///
    /// - Throws: ``BrokerError`` 400 "Could not ping to verify".
    public func registerDatastore(_ registration: DatastoreRegistration, remoteHost: String?) async throws {
        let datastore = registration.datastore
        try Self.checkRegistration(hosts: registration.hosts, port: datastore.address.port)
        guard
            let host = await verify(
                hosts: registration.hosts, port: datastore.address.port, id: datastore.id, remoteHost: remoteHost)
        else {
            logger.error("could not ping datastore \(datastore.id.ucpString) to verify it is online")
            throw BrokerError(.badRequest, "Could not ping to verify")
        }
        try store.registerDatastore(
            DatastoreEntry(
                id: datastore.id, address: Address(host: host, port: datastore.address.port),
                hosts: registration.hosts, lastSeen: now()))
        logger.info(
            "datastore registered", metadata: ["datastore": "\(datastore.id.ucpString)", "host": "\(host)"])
        markDirty()
    }

    /// Records a datastore's heartbeat.
    ///
    /// - Throws: ``BrokerError`` 404 "No such datastore" for one not registered (or failed).
    public func heartbeatDatastore(_ id: UUID) throws {
        let known = try store.heartbeatDatastore(id, at: now())
        guard known else { throw BrokerError(.notFound, "No such datastore") }
        gauges.datastoreHeartbeats.increment()
    }

    /// The most hosts a registration may list: each is pinged in turn, so the list bounds the
    /// work (and the calls to other machines) that one request can cause.
    public static let maxRegistrationHosts = 16
    /// The longest host name accepted in a registration (DNS's limit).
    public static let maxHostLength = 253
    /// How long one registration ping may take.
    static let pingTimeout: Duration = .seconds(2)

    /// Checks the hosts and port of a registration before any of them is pinged.
    ///
    /// - Throws: ``BrokerError`` 400 naming the bound: more than ``maxRegistrationHosts`` hosts,
    ///   a host longer than ``maxHostLength`` bytes, a port outside 1...65535.
    static func checkRegistration(hosts: [String], port: Int) throws(BrokerError) {
        guard hosts.count <= maxRegistrationHosts else {
            throw BrokerError(
                .badRequest, "a registration lists \(hosts.count) hosts; at most \(maxRegistrationHosts) are pinged")
        }
        if let long = hosts.first(where: { $0.utf8.count > maxHostLength }) {
            throw BrokerError(.badRequest, "a host of \(long.utf8.count) bytes is listed; at most \(maxHostLength)")
        }
        guard (1...65535).contains(port) else {
            throw BrokerError(.badRequest, "the address's port \(port) is not in 1...65535")
        }
    }

    /// The first of `hosts` (the remote host first when listed) whose `GET /ping` on `port`
    /// answers an instance name carrying `id`; each ping waits at most ``pingTimeout``.
    func verify(hosts: [String], port: Int, id: UUID, remoteHost: String?) async -> String? {
        var ordered = hosts
        if let remoteHost, let index = ordered.firstIndex(of: remoteHost) {
            ordered.remove(at: index)
            ordered.insert(remoteHost, at: 0)
        }
        for host in ordered where !host.isEmpty {
            do {
                let name = try await client.decode(
                    String.self, .GET, Address(host: host, port: port), "/ping", timeout: Self.pingTimeout)
                if Self.id(fromInstanceName: name) == id { return host }
                logger.debug("ping answered another node", metadata: ["host": "\(host)", "name": "\(name)"])
            } catch {
                logger.debug("ping failed", metadata: ["host": "\(host)", "error": "\(error)"])
            }
        }
        return nil
    }

    /// The node id in a zeroconf instance name `_<role><uuid>._urban-cp._tcp.local.`.
    public static func id(fromInstanceName name: String) -> UUID? {
        guard let label = name.split(separator: ".", omittingEmptySubsequences: false).first, label.count >= 36 else {
            return nil
        }
        return UUID(uuidString: String(label.suffix(36)))
    }
}
