import Foundation

/// A lut.json (or policy) document that does not have the shape the selector needs.
public struct SchemaError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { return message }
}

/// Parsed JSON that keeps booleans, integers and doubles apart (JSONSerialization's NSNumber does not).
public enum JSONValue: Decodable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let v = try? c.decode(Bool.self) {
            self = .bool(v)
        } else if let v = try? c.decode(Int.self) {
            self = .int(v)
        } else if let v = try? c.decode(Double.self) {
            self = .double(v)
        } else if let v = try? c.decode(String.self) {
            self = .string(v)
        } else if let v = try? c.decode([JSONValue].self) {
            self = .array(v)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    public static func parse(_ data: Data) throws -> JSONValue {
        return try JSONDecoder().decode(JSONValue.self, from: data)
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var intValue: Int? {
        if case .int(let i) = self { return i }
        return nil
    }

    /// A number (integer or not) as a Double.
    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// Short text for error messages.
    public var text: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .string(let s): return "\"" + s + "\""
        case .array: return "a list"
        case .object: return "an object"
        }
    }
}

/// Typed access to one JSON object's fields, with errors naming the document, the field and what was expected.
/// (Public so that ResflexCore reads manifest.json with the same rules.)
public struct Fields {
    public let fields: [String: JSONValue]
    public let location: String

    public init(_ value: JSONValue?, _ location: String) throws {
        guard let value = value, let o = value.objectValue else {
            throw SchemaError("\(location): expected a JSON object, got \(value?.text ?? "nothing")")
        }
        self.fields = o
        self.location = location
    }

    /// The field, or nil when it is absent or null.
    public func raw(_ name: String) -> JSONValue? {
        guard let v = fields[name], !v.isNull else { return nil }
        return v
    }

    public func fail(_ name: String, _ expected: String) -> SchemaError {
        return SchemaError("\(location).\(name): expected \(expected), got \(fields[name]?.text ?? "nothing")")
    }

    public func string(_ name: String) throws -> String {
        guard let v = raw(name)?.stringValue else { throw fail(name, "a string") }
        return v
    }

    public func int(_ name: String) throws -> Int {
        guard let v = raw(name)?.intValue else { throw fail(name, "an integer") }
        return v
    }

    public func double(_ name: String) throws -> Double {
        guard let v = raw(name)?.doubleValue else { throw fail(name, "a number") }
        return v
    }

    public func optDouble(_ name: String) throws -> Double? {
        guard let v = raw(name) else { return nil }
        guard let d = v.doubleValue else { throw fail(name, "a number or null") }
        return d
    }

    public func optArray(_ name: String) throws -> [JSONValue]? {
        guard let v = raw(name) else { return nil }
        guard let a = v.arrayValue else { throw fail(name, "a list or null") }
        return a
    }

    public func optObject(_ name: String) throws -> [String: JSONValue]? {
        guard let v = raw(name) else { return nil }
        guard let o = v.objectValue else { throw fail(name, "a JSON object or null") }
        return o
    }
}
