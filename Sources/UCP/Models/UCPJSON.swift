import Foundation

/// A JSON body that could not be read as the model a route expects.
///
/// Carries the model's name, the path of the failing field (`"capabilities.memory"`, `""` for the
/// body itself) and what was wrong, so that a 400 answer says exactly which value to fix.
public struct ModelDecodingError: Error, Hashable, CustomStringConvertible {
    /// The model being decoded, e.g. `"JobInfo"`.
    public var model: String
    /// The dotted path of the failing field; array elements appear as their index.
    public var field: String
    /// What was wrong with it.
    public var problem: String

    /// A decoding error.
    public init(model: String, field: String, problem: String) {
        self.model = model
        self.field = field
        self.problem = problem
    }

    /// One line: `JobInfo: field "capabilities.memory": expected Int, found a string`.
    public var description: String {
        field.isEmpty ? "\(model): \(problem)" : "\(model): field \"\(field)\": \(problem)"
    }
}

/// UCP's JSON conventions in one place: decoding that turns `DecodingError` into
/// ``ModelDecodingError``, and encoding with sorted keys (stable bodies for tests and logs).
public enum UCPJSON {
    /// Decodes `T` from `data`.
    ///
    /// - Throws: ``ModelDecodingError`` naming the failing field and the problem.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let error as DecodingError {
            throw ModelDecodingError(decodingError: error, model: String(describing: type))
        }
    }

    /// Encodes `value` as compact JSON with sorted keys.
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }
}

extension ModelDecodingError {
    /// Translates Foundation's `DecodingError` for `model`.
    public init(decodingError error: DecodingError, model: String) {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .typeMismatch(let type, let context):
            let problem =
                context.debugDescription.isEmpty ? "expected \(Self.typeName(type))" : context.debugDescription
            self.init(model: model, field: path(context.codingPath), problem: problem)
        case .valueNotFound(let type, let context):
            self.init(
                model: model, field: path(context.codingPath), problem: "expected \(Self.typeName(type)), found null")
        case .keyNotFound(let key, let context):
            self.init(
                model: model, field: path(context.codingPath + [key]), problem: "required field is missing")
        case .dataCorrupted(let context):
            let underlying = context.underlyingError.map { "\($0)" }
            let text = context.codingPath.isEmpty ? "not valid JSON" : context.debugDescription
            self.init(model: model, field: path(context.codingPath), problem: underlying ?? text)
        @unknown default:
            self.init(model: model, field: "", problem: "\(error)")
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "a boolean"
        case is Int.Type: "an integer"
        case is Double.Type: "a number"
        default: String(describing: type)
        }
    }
}
