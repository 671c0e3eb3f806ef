import Causal

/// Everything an executor needs to run a job: UCP's `JobInfo` model, field for field, plus the
/// CausalUCP extension `emergency`.
///
/// JSON fields and defaults (as UCP's pydantic model has them): `wasm_bin` (required; a name or
/// a `[name, path]` pair), `wasm_bin_is_named` (false), `stdin` (`["", ""]`), `stdin_is_named`
/// (false), `job_data` ({}), `named_data` ({}), `directories` ([]), `args` ([]), `env` ({}),
/// `zip_results` (`{"/": "/"}`), `named_results` ({}), `capabilities` (all defaults),
/// `result_addr` (`{"host": "", "port": 0}`), `delete` (true). Extension: `emergency`
/// (`"LOW"`), omitted by plain UCP clients and ignored by plain UCP nodes.
///
/// Paths in `job_data`, `named_data`, `directories`, `zip_results` and `named_results` are paths
/// inside the job's data folder as the guest sees it (`/` is the folder itself); decoding does
/// not check them, the executor does (see ``JobPath``).
public struct JobInfo: Sendable, Hashable, Codable {
    /// The job's WebAssembly binary.
    public var wasmBin: DataReference
    /// True when `wasmBin` names shared data rather than data of this job.
    public var wasmBinIsNamed: Bool
    /// The data fed to the job's stdin; ``DataReference/none`` for none.
    public var stdin: DataReference
    /// True when `stdin` names shared data rather than data of this job.
    public var stdinIsNamed: Bool
    /// Data of this job: data name → path inside the job.
    public var jobData: [String: String]
    /// Shared data: data name → path inside the job.
    public var namedData: [String: String]
    /// Folders to create inside the job before it runs.
    public var directories: [String]
    /// The job's arguments, after argv[0] (which is the module's name).
    public var args: [String]
    /// The job's environment.
    public var env: [String: String]
    /// What goes into the result zip: path inside the job → path inside the zip.
    public var zipResults: [String: String]
    /// What is stored as named data after the job: path inside the job → data name.
    public var namedResults: [String: String]
    /// What the job needs from its executor.
    public var capabilities: Capabilities
    /// Where the result goes; an unset host means a datastore, as `<job_id>/result`.
    public var resultAddr: Address
    /// Whether the job's data is deleted once it is done.
    public var delete: Bool
    /// How urgent the job is (CausalUCP extension; `.low` when absent).
    public var emergency: EmergencyLevel

    /// A job description; every argument but `wasmBin` defaults as UCP's do.
    public init(
        wasmBin: DataReference,
        wasmBinIsNamed: Bool = false,
        stdin: DataReference = .none,
        stdinIsNamed: Bool = false,
        jobData: [String: String] = [:],
        namedData: [String: String] = [:],
        directories: [String] = [],
        args: [String] = [],
        env: [String: String] = [:],
        zipResults: [String: String] = ["/": "/"],
        namedResults: [String: String] = [:],
        capabilities: Capabilities = Capabilities(),
        resultAddr: Address = Address(),
        delete: Bool = true,
        emergency: EmergencyLevel = .low
    ) {
        self.wasmBin = wasmBin
        self.wasmBinIsNamed = wasmBinIsNamed
        self.stdin = stdin
        self.stdinIsNamed = stdinIsNamed
        self.jobData = jobData
        self.namedData = namedData
        self.directories = directories
        self.args = args
        self.env = env
        self.zipResults = zipResults
        self.namedResults = namedResults
        self.capabilities = capabilities
        self.resultAddr = resultAddr
        self.delete = delete
        self.emergency = emergency
    }

    private enum CodingKeys: String, CodingKey {
        case wasmBin = "wasm_bin"
        case wasmBinIsNamed = "wasm_bin_is_named"
        case stdin
        case stdinIsNamed = "stdin_is_named"
        case jobData = "job_data"
        case namedData = "named_data"
        case directories, args, env
        case zipResults = "zip_results"
        case namedResults = "named_results"
        case capabilities
        case resultAddr = "result_addr"
        case delete, emergency
    }

    /// Decodes UCP's JSON. Only `wasm_bin` is required; missing fields take their defaults;
    /// a field of the wrong type is a `DecodingError` whose coding path names it.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        wasmBin = try c.decode(DataReference.self, forKey: .wasmBin)
        wasmBinIsNamed = try c.decodeIfPresent(Bool.self, forKey: .wasmBinIsNamed) ?? false
        stdin = try c.decodeIfPresent(DataReference.self, forKey: .stdin) ?? .none
        stdinIsNamed = try c.decodeIfPresent(Bool.self, forKey: .stdinIsNamed) ?? false
        jobData = try c.decodeIfPresent([String: String].self, forKey: .jobData) ?? [:]
        namedData = try c.decodeIfPresent([String: String].self, forKey: .namedData) ?? [:]
        directories = try c.decodeIfPresent([String].self, forKey: .directories) ?? []
        args = try c.decodeIfPresent([String].self, forKey: .args) ?? []
        env = try c.decodeIfPresent([String: String].self, forKey: .env) ?? [:]
        zipResults = try c.decodeIfPresent([String: String].self, forKey: .zipResults) ?? ["/": "/"]
        namedResults = try c.decodeIfPresent([String: String].self, forKey: .namedResults) ?? [:]
        capabilities = try c.decodeIfPresent(Capabilities.self, forKey: .capabilities) ?? Capabilities()
        resultAddr = try c.decodeIfPresent(Address.self, forKey: .resultAddr) ?? Address()
        delete = try c.decodeIfPresent(Bool.self, forKey: .delete) ?? true
        emergency = try c.decodeIfPresent(EmergencyLevel.self, forKey: .emergency) ?? .low
    }
}
