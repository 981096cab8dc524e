import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A lut.json (or policy) document that does not have the shape the selector needs.
public struct SchemaError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { return message }
}

/// The limits every resflex reader (Python, Kotlin, Swift) puts on a JSON document of a bundle, and reading one
/// without following a symlink or blocking on a FIFO.
public enum Document {
    /// mobile/bundle/schema.py MAX_DOCUMENT_BYTES: manifest.json, lut.json, selector_policy.json.
    public static let maxBytes = 64 << 20
    /// Nesting of arrays and objects (a real lut.json is under 10 deep).
    public static let maxDepth = 64
    static let tooDeepMessage = "JSON nested too deeply (more than \(maxDepth) levels of lists and objects)"

    /// True when the brackets outside strings nest deeper than `maxDepth`.
    public static func tooDeep(_ data: Data) -> Bool {
        var depth = 0
        var inString = false
        var escaped = false
        for byte in data {
            if inString {
                if escaped { escaped = false } else if byte == 0x5C { escaped = true } else if byte == 0x22 { inString = false }
            } else if byte == 0x22 {
                inString = true
            } else if byte == 0x5B || byte == 0x7B {
                depth += 1
                if depth > maxDepth { return true }
            } else if byte == 0x5D || byte == 0x7D {
                depth -= 1
            }
        }
        return false
    }

    /// True when something (a file, folder, symlink — even a dangling one — or special file) is at `path`.
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// The bytes of the document at `path` (`name` in errors): it must be a regular file (not a symlink, FIFO,
    /// socket, device or folder; checked with lstat before opening) of at most `maxBytes`. A missing file is
    /// "name: not found in <folder>".
    public static func read(_ path: String, name: String) throws -> Data {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT {
                throw SchemaError("\(name): not found in \((path as NSString).deletingLastPathComponent)")
            }
            throw SchemaError("\(name): cannot be read: \(String(cString: strerror(errno)))")
        }
        let type = st.st_mode & S_IFMT
        if type == S_IFLNK { throw SchemaError("\(name): is a symlink; a bundle may not contain symlinks") }
        if type == S_IFDIR { throw SchemaError("\(name): is a folder; expected a JSON file") }
        if type != S_IFREG {
            throw SchemaError("\(name): is not a regular file (a FIFO, socket or device); expected a JSON file")
        }
        if Int64(st.st_size) > Int64(maxBytes) {
            throw SchemaError("\(name): \(st.st_size) bytes; a document is at most \(maxBytes) bytes")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw SchemaError("\(name): cannot be read")
        }
        defer { try? handle.close() }
        let data = handle.readData(ofLength: maxBytes + 1)  // the file may have grown since lstat
        if data.count > maxBytes { throw SchemaError("\(name): more than \(maxBytes) bytes; a document is at most that") }
        return data
    }
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

    /// Parse JSON; a document nested deeper than `Document.maxDepth` is refused before the (recursive) decoder sees it.
    public static func parse(_ data: Data) throws -> JSONValue {
        if Document.tooDeep(data) { throw SchemaError(Document.tooDeepMessage) }
        return try JSONDecoder().decode(JSONValue.self, from: data)
    }

    /// Parse a document; every failure is a SchemaError "`source`: ...".
    public static func parse(_ data: Data, source: String) throws -> JSONValue {
        if Document.tooDeep(data) { throw SchemaError("\(source): \(Document.tooDeepMessage)") }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw SchemaError("\(source): not valid JSON: \(error)")
        }
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
