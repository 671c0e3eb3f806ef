import Causal
import Foundation

/// The request paths of UCP's broker API, with data names percent-encoded once (slashes kept),
/// as UCP's nodes send them.
public enum UCPPaths {
    /// `name` percent-encoded for a URL path: every character outside RFC 3986's path set is
    /// escaped; `/` stays a separator.
    public static func encode(_ name: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "%;?#")
        return name.addingPercentEncoding(withAllowedCharacters: allowed) ?? name
    }

    /// `/data/{name}`, plus `?job_id=` when `jobID` is given.
    public static func data(_ name: String, jobID: UUID? = nil) -> String {
        "/data/" + encode(name) + (jobID.map { "?job_id=" + $0.ucpString } ?? "")
    }

    /// `/list/data/{prefix}`.
    public static func listData(_ prefix: String) -> String { "/list/data/" + encode(prefix) }

    /// `/result/{job_id}`.
    public static func result(_ jobID: UUID) -> String { "/result/" + jobID.ucpString }

    /// `/job/done/{job_id}`.
    public static func jobDone(_ jobID: UUID) -> String { "/job/done/" + jobID.ucpString }

    /// `/job/submit/{job_id}`.
    public static func jobSubmit(_ jobID: UUID) -> String { "/job/submit/" + jobID.ucpString }

    /// `/job/{job_id}`.
    public static func job(_ jobID: UUID) -> String { "/job/" + jobID.ucpString }

    /// `/executors/register`.
    public static let register = "/executors/register"

    /// `/executors/heartbeat/{exec_id}`.
    public static func heartbeat(_ executorID: UUID) -> String { "/executors/heartbeat/" + executorID.ucpString }

    /// The name UCP gives data that belongs to a job: `<job_id>/<name>`.
    public static func jobDataName(_ jobID: UUID, _ name: String) -> String { jobID.ucpString + "/" + name }
}

