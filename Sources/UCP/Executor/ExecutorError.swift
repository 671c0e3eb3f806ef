import Foundation

/// Why the executor refused or could not do something.
public enum ExecutorError: Error, Hashable, CustomStringConvertible {
    /// The executor is shutting down and takes no new job.
    case notAccepting
    /// A job with this id is already here.
    case duplicateJob(UUID)
    /// The job names a path or data name that could leave its folder, or is malformed.
    case invalidJob(UUID, problem: String)
    /// The job's folder could not be set up.
    case setup(UUID, problem: String)
    /// No job with this id is here.
    case unknownJob(UUID)
    /// The executor's id could not be read or kept.
    case identity(path: String, problem: String)
    /// The configuration is inconsistent (for example ``ExecutorConfiguration/emergencySlots``
    /// not below ``ExecutorConfiguration/workers``).
    case configuration(String)

    /// One line saying what went wrong and with what.
    public var description: String {
        switch self {
        case .notAccepting: "the executor is shutting down and accepts no job"
        case .duplicateJob(let id): "job \(id.ucpString) is already on this executor"
        case .invalidJob(let id, let problem): "job \(id.ucpString): \(problem)"
        case .setup(let id, let problem): "cannot set up job \(id.ucpString): \(problem)"
        case .unknownJob: "Job not found"
        case .identity(let path, let problem): "cannot keep the executor id in \(path): \(problem)"
        case .configuration(let problem): "invalid executor configuration: \(problem)"
        }
    }
}
