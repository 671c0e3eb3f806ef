import CoreMetrics
import Foundation
import Metrics
import Prometheus

/// One node's metrics, kept apart from every other node's (several nodes may share a process in
/// tests and demos) and served in Prometheus' text format at `GET /metrics`.
///
/// Metrics are made through swift-metrics with this node's factory, so code that records them
/// uses the ordinary `Counter`, `Gauge`, `Recorder` and `Timer` types. Names follow Prometheus:
/// `ucp_<what>_<unit>`. Thread-safe.
public final class NodeMetrics: Sendable {
    /// Where the metrics are kept.
    public let registry: PrometheusCollectorRegistry
    /// The swift-metrics factory that writes into `registry`.
    public let factory: PrometheusMetricsFactory
    /// Requests answered, by method and status class (`2xx`, `4xx`, ...).
    let requestCounters: RequestCounters

    /// Empty metrics for one node.
    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(50),
            .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(5), .seconds(30),
        ]
        self.factory = factory
        requestCounters = RequestCounters(factory: factory)
    }

    /// A counter named `label` with `dimensions`.
    public func counter(_ label: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: label, dimensions: dimensions, factory: factory)
    }

    /// A gauge named `label` with `dimensions`.
    public func gauge(_ label: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Gauge {
        CoreMetrics.Gauge(label: label, dimensions: dimensions, factory: factory)
    }

    /// A timer (a duration histogram) named `label` with `dimensions`.
    public func timer(_ label: String, _ dimensions: [(String, String)] = []) -> Metrics.Timer {
        Metrics.Timer(label: label, dimensions: dimensions, factory: factory)
    }

    /// Every metric in Prometheus' text exposition format.
    public func exposition() -> String {
        registry.emitToString()
    }
}

/// The request counters, made once per status class so that answering costs no allocation.
struct RequestCounters: Sendable {
    private let answered: [String: CoreMetrics.Counter]
    private let errors: CoreMetrics.Counter

    init(factory: PrometheusMetricsFactory) {
        var answered: [String: CoreMetrics.Counter] = [:]
        for method in ["GET", "PUT", "POST", "DELETE", "other"] {
            for status in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
                answered["\(method) \(status)"] = CoreMetrics.Counter(
                    label: "ucp_http_requests_total", dimensions: [("method", method), ("status", status)],
                    factory: factory)
            }
        }
        self.answered = answered
        errors = CoreMetrics.Counter(label: "ucp_http_request_errors_total", factory: factory)
    }

    /// Counts one answer with `status` to a request with `method`.
    func record(method: String, status: Int) {
        let known = ["GET", "PUT", "POST", "DELETE"].contains(method) ? method : "other"
        let klass = "\(min(max(status / 100, 1), 5))xx"
        answered["\(known) \(klass)"]?.increment()
        if status >= 400 { errors.increment() }
    }
}
