import Foundation
import Logging

/// How a broker runs: `ucp broker --host ... --port ... [--rootdir broker.d]` and its timings.
public struct BrokerConfiguration: Sendable, Hashable {
    /// The address to listen on.
    public var host: String
    /// The port to listen on (0 picks a free one).
    public var port: Int
    /// The data folder; the database is `<rootdir>/broker.sqlite`.
    public var rootdir: String
    /// The broker's id; nil takes the one stored in `rootdir`, or a fresh one that is then stored.
    public var id: UUID?
    /// How often executors and datastores are expected to beat (UCP: 60 s).
    public var heartbeatInterval: Duration
    /// An executor silent this long is suspected: it keeps its jobs but gets no new ones, until
    /// it beats again. At most `failAfter` (a longer one counts as `failAfter`).
    public var suspectAfter: Duration
    /// A node silent this long is failed (UCP prunes after 130 s): it must register again, and an
    /// executor's assigned jobs are redeployed to others. More than `heartbeatInterval`.
    public var failAfter: Duration
    /// How often the broker retries queued jobs and looks for silent nodes.
    public var tickInterval: Duration
    /// Deadline of a ping, a dispatch or a datastore query.
    public var callTimeout: Duration
    /// Deadline of a data or result transfer.
    public var transferTimeout: Duration
    /// Largest data or result upload passed through, in bytes (larger: 413).
    public var maxUploadBytes: Int64
    /// Most jobs dispatched at once by the background loop.
    public var maxConcurrentDispatches: Int
    /// The log level.
    public var logLevel: Logger.Level
    /// The cluster's key: when set, the broker proves membership on its calls and requires proof
    /// on state-changing calls it serves (``ClusterAuth``). Default none, as UCP.
    public var auth: ClusterAuth? = nil
    /// Jobs per core of an executor's that it holds at most, assigned or being sent to it;
    /// past that, jobs wait at the broker (ordered by emergency level) until the executor
    /// reports one done. HIGH and CRITICAL jobs are sent regardless. Default 4.
    public var dispatchWindow = 4
    /// Membership in a federation of brokers (needs the cluster key); nil for a broker alone.
    public var federation: FederationConfiguration? = nil

    /// The former name of ``failAfter``.
    @available(*, deprecated, renamed: "failAfter")
    public var pruneAfter: Duration {
        get { failAfter }
        set { failAfter = newValue }
    }

    /// A configuration with UCP's defaults (broker port 8000, 60 s beats, failing after 130 s).
    /// Without `suspectAfter`, executors are suspected halfway between `heartbeatInterval` and
    /// `failAfter` (95 s by default).
    public init(
        host: String = "127.0.0.1", port: Int = 8000, rootdir: String = "broker.d", id: UUID? = nil,
        heartbeatInterval: Duration = .seconds(60), suspectAfter: Duration? = nil, failAfter: Duration = .seconds(130),
        tickInterval: Duration = .seconds(1), callTimeout: Duration = .seconds(10),
        transferTimeout: Duration = .seconds(600), maxUploadBytes: Int64 = 1 << 30, maxConcurrentDispatches: Int = 16,
        logLevel: Logger.Level = .info
    ) {
        precondition(failAfter > heartbeatInterval, "failAfter must be longer than heartbeatInterval")
        precondition(suspectAfter.map { $0 > .zero && $0 <= failAfter } ?? true, "suspectAfter is in (0, failAfter]")
        precondition(maxConcurrentDispatches >= 1 && maxUploadBytes >= 0, "limits are positive")
        self.host = host
        self.port = port
        self.rootdir = rootdir
        self.id = id
        self.heartbeatInterval = heartbeatInterval
        self.suspectAfter = suspectAfter ?? (heartbeatInterval + failAfter) / 2
        self.failAfter = failAfter
        self.tickInterval = tickInterval
        self.callTimeout = callTimeout
        self.transferTimeout = transferTimeout
        self.maxUploadBytes = maxUploadBytes
        self.maxConcurrentDispatches = maxConcurrentDispatches
        self.logLevel = logLevel
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    var seconds: Double {
        let (whole, fraction) = components
        return Double(whole) + Double(fraction) / 1e18
    }
}
