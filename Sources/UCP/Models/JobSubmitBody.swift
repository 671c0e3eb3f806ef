import Foundation

/// The body of `PUT /job/submit/{job_id}`: `{"job_info": JobInfo, "wait_for": [uuid, ...]}`
/// (`wait_for` left out when nil, which asks the broker to dispatch the job at once).
public struct JobSubmitBody: Sendable, Hashable, Codable {
    /// The job.
    public var jobInfo: JobInfo
    /// The jobs it waits for, or nil.
    public var waitFor: [UUID]?

    /// A body.
    public init(jobInfo: JobInfo, waitFor: [UUID]? = nil) {
        self.jobInfo = jobInfo
        self.waitFor = waitFor
    }

    private enum CodingKeys: String, CodingKey {
        case jobInfo = "job_info"
        case waitFor = "wait_for"
    }

    /// Decodes the JSON form.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        jobInfo = try c.decode(JobInfo.self, forKey: .jobInfo)
        waitFor = try c.decodeIfPresent([UUID].self, forKey: .waitFor)
    }

    /// Encodes the JSON form, ids lowercased as Python writes them.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(jobInfo, forKey: .jobInfo)
        try c.encodeIfPresent(waitFor?.map { $0.ucpString }, forKey: .waitFor)
    }
}
