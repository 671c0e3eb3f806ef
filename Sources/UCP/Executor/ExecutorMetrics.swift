import Metrics

/// The executor's metrics, made once in the node's registry (``NodeMetrics``):
///
/// - `ucp_jobs{state}`: jobs on the executor by ``ExecutorJobState`` (settled states count the
///   jobs kept in its history);
/// - `ucp_queue_depth`: jobs ready and waiting for a worker;
/// - `ucp_heartbeats_total{result}`: heartbeats sent, `ok` or `error`;
/// - `ucp_registrations_total{result}`: registration attempts, `ok` or `error`;
/// - `ucp_broker_call_failures_total`: broker calls that failed (each attempt);
/// - `ucp_clock_width`: entries in the executor's vector clock;
/// - `ucp_executor_preemptions_total`: running jobs preempted for a CRITICAL job;
/// - `ucp_executor_emergency_level`: the emergency mode in force, 0 none, else the level's raw
///   value (1 LOW ... 4 CRITICAL).
struct ExecutorMetrics: Sendable {
    let jobs: [ExecutorJobState: Metrics.Gauge]
    let queueDepth: Metrics.Gauge
    let heartbeatsOK: Metrics.Counter
    let heartbeatsFailed: Metrics.Counter
    let registrationsOK: Metrics.Counter
    let registrationsFailed: Metrics.Counter
    let brokerCallFailures: Metrics.Counter
    let clockWidth: Metrics.Gauge
    let preemptions: Metrics.Counter
    let emergencyLevel: Metrics.Gauge

    init(_ metrics: NodeMetrics) {
        var jobs: [ExecutorJobState: Metrics.Gauge] = [:]
        for state in ExecutorJobState.allCases {
            let gauge = metrics.gauge("ucp_jobs", [("state", state.rawValue)])
            gauge.record(0)
            jobs[state] = gauge
        }
        self.jobs = jobs
        queueDepth = metrics.gauge("ucp_queue_depth")
        queueDepth.record(0)
        heartbeatsOK = metrics.counter("ucp_heartbeats_total", [("result", "ok")])
        heartbeatsFailed = metrics.counter("ucp_heartbeats_total", [("result", "error")])
        registrationsOK = metrics.counter("ucp_registrations_total", [("result", "ok")])
        registrationsFailed = metrics.counter("ucp_registrations_total", [("result", "error")])
        brokerCallFailures = metrics.counter("ucp_broker_call_failures_total")
        clockWidth = metrics.gauge("ucp_clock_width")
        clockWidth.record(0)
        preemptions = metrics.counter("ucp_executor_preemptions_total")
        emergencyLevel = metrics.gauge("ucp_executor_emergency_level")
        emergencyLevel.record(0)
    }
}
