import Foundation

/// A JSON value to write, with object keys in the order given (so files read like the README's examples).
public indirect enum JSONOut: Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case number(Double)
    case string(String)
    case array([JSONOut])
    case object([(String, JSONOut)])

    public static func == (a: JSONOut, b: JSONOut) -> Bool {
        return a.text(indent: nil) == b.text(indent: nil)
    }

    /// `nil` for a non-finite number (JSON has none): never writes NaN or Infinity.
    public static func finite(_ x: Double?) -> JSONOut {
        guard let x = x, x.isFinite else { return .null }
        return .number(x)
    }

    /// The JSON text; `indent` spaces per level, or one line when nil. Non-finite numbers are written as null.
    public func text(indent: Int? = 2) -> String {
        var out = ""
        write(&out, indent: indent, level: 0)
        return out
    }

    private func write(_ out: inout String, indent: Int?, level: Int) {
        func newline(_ l: Int) {
            if let n = indent { out += "\n" + String(repeating: " ", count: n * l) }
        }
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .number(let d):
            if !d.isFinite {
                out += "null"
            } else if d == d.rounded(), abs(d) < 1e15 {
                out += String(Int64(d)) + ".0"
            } else {
                out += "\(d)"
            }
        case .string(let s): out += JSONOut.quote(s)
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += indent == nil ? ", " : "," }
                newline(level + 1)
                v.write(&out, indent: indent, level: level + 1)
            }
            newline(level)
            out += "]"
        case .object(let o):
            if o.isEmpty { out += "{}"; return }
            out += "{"
            for (i, (k, v)) in o.enumerated() {
                if i > 0 { out += indent == nil ? ", " : "," }
                newline(level + 1)
                out += JSONOut.quote(k) + ": "
                v.write(&out, indent: indent, level: level + 1)
            }
            newline(level)
            out += "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// Write `text()` + "\n" to `url` atomically (a temporary file in the same folder, then a rename).
    public func write(to url: URL) throws {
        let data = Data((text() + "\n").utf8)
        try data.write(to: url, options: .atomic)
    }
}
