import Foundation
import ResflexSelector
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A bundle that cannot be used as it is: missing or tampered file, unsafe path, wrong kind or version. The message
/// names the file and the field.
public struct BundleError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { return message }
}

/// An opened bundle: its documents, and the artifacts whose sha256 was verified (only those can be used).
public struct ResflexBundle {
    public let root: URL
    public let manifest: Manifest
    public let lut: Lut
    /// selector_policy.json over the defaults, or nil when the bundle has none.
    public let policy: Policy?
    /// `file` of every artifact verified by `BundleReader.open` (main file and extra files).
    public let verified: Set<String>

    /// The on-disk location of a verified artifact; throws for one that was not verified (or is not in the manifest).
    public func url(of artifact: ArtifactInfo) throws -> URL {
        guard verified.contains(artifact.file) else {
            throw BundleError("\(artifact.file): not verified (open the bundle with its backend \(artifact.backend))")
        }
        return root.appendingPathComponent(artifact.file)
    }

    /// The artifact serving an operating point, or nil when manifest.json does not list it.
    public func artifact(for point: OperatingPoint) -> ArtifactInfo? {
        return manifest.artifact(file: point.artifact)
    }

    /// The selector policy to use: the bundle's selector_policy.json (over `base`) — read again so `base` applies.
    public func selector(device: String, base: Policy = Policy()) throws -> OperatingPointSelector {
        var p = base
        let url = root.appendingPathComponent(Policy.file)
        if policy != nil { p = try Policy.parse(try Data(contentsOf: url), base: base, source: Policy.file) }
        return try OperatingPointSelector(lut: lut, device: device, policy: p)
    }
}

/// Opens a bundle folder: manifest.json, lut.json, optional selector_policy.json; checks kind and major version;
/// refuses artifact paths that are absolute, contain `..`, or resolve (through symlinks) outside the bundle; and
/// verifies the sha256 of every artifact of the requested backends before anything uses it.
///
///     let bundle = try BundleReader.open(url, backends: ["coreml"])
public enum BundleReader {
    /// `backends`: verify only the artifacts of these backends (nil: all). Others stay unusable (`url(of:)` throws).
    public static func open(_ root: URL, backends: Set<String>? = nil) throws -> ResflexBundle {
        guard let rootReal = realPath(root.path) else { throw BundleError("\(root.path): bundle folder not found") }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: rootReal, isDirectory: &isDir), isDir.boolValue else {
            throw BundleError("\(root.path): not a folder")
        }
        let manifest = try Manifest.parse(try read(root, Manifest.file), source: Manifest.file)
        let lut: Lut
        do {
            lut = try Lut.parse(try read(root, "lut.json"), source: "lut.json")
        } catch let e as SchemaError {
            throw BundleError(e.message)
        }
        var policy: Policy? = nil
        let policyURL = root.appendingPathComponent(Policy.file)
        if FileManager.default.fileExists(atPath: policyURL.path) {
            do {
                policy = try Policy.parse(try Data(contentsOf: policyURL), source: Policy.file)
            } catch let e as SchemaError {
                throw BundleError(e.message)
            } catch let e as PolicyError {
                throw BundleError(e.message)
            }
        }
        // Every path, whatever its backend, must be safe; only the requested backends are hashed.
        for (i, a) in manifest.artifacts.enumerated() {
            try checkPath(a.file, root: rootReal, field: "\(Manifest.file): artifacts[\(i)].file")
            for (j, x) in a.extraFiles.enumerated() {
                try checkPath(x.file, root: rootReal, field: "\(Manifest.file): artifacts[\(i)].extra_files[\(j)].file")
            }
        }
        for (i, op) in lut.operatingPoints.enumerated() {
            try checkSafe(op.artifact, field: "lut.json: operating_points[\(i)].artifact")
        }
        var verified = Set<String>()
        for (i, a) in manifest.artifacts.enumerated() where backends == nil || backends!.contains(a.backend) {
            try verify(a.file, sha256: a.sha256, root: rootReal, field: "\(Manifest.file): artifacts[\(i)]")
            for (j, x) in a.extraFiles.enumerated() {
                try verify(x.file, sha256: x.sha256, root: rootReal,
                           field: "\(Manifest.file): artifacts[\(i)].extra_files[\(j)]")
            }
            verified.insert(a.file)
        }
        return ResflexBundle(root: URL(fileURLWithPath: rootReal, isDirectory: true), manifest: manifest, lut: lut,
                             policy: policy, verified: verified)
    }

    private static func read(_ root: URL, _ name: String) throws -> Data {
        let url = root.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else { throw BundleError("\(name): not found in \(root.path)") }
        do {
            return try Data(contentsOf: url)
        } catch {
            throw BundleError("\(name): cannot be read: \(error)")
        }
    }

    /// mobile/bundle/schema.py `safe_relpath` (`SchemaRules.pathProblem`): relative, POSIX, canonical (no `.`, `..`
    /// or empty parts), no `~`, no control characters, not empty.
    public static func checkSafe(_ path: String, field: String) throws {
        if let problem = SchemaRules.pathProblem(path) { throw BundleError("\(field): \(problem)") }
    }

    /// Safe, and (following symlinks) inside the bundle.
    static func checkPath(_ path: String, root: String, field: String) throws {
        try checkSafe(path, field: field)
        let full = root + "/" + path
        // A dangling or missing path is reported when it is verified; here only where an existing one leads.
        if let real = realPath(full), !inside(real, root) {
            throw BundleError("\(field): \"\(path)\" resolves to \(real), outside the bundle (symlink)")
        }
    }

    static func inside(_ real: String, _ root: String) -> Bool {
        return real == root || real.hasPrefix(root.hasSuffix("/") ? root : root + "/")
    }

    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    static func verify(_ path: String, sha256 expected: String, root: String, field: String) throws {
        let full = root + "/" + path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: full, isDirectory: &isDir) else {
            throw BundleError("\(field).file: \(path) is missing from the bundle")
        }
        let got = try sha256(of: full, bundleRoot: root, field: "\(field).file")
        if got != expected.lowercased() {
            throw BundleError("\(field).sha256: \(path) has sha256 \(got), the manifest says \(expected) "
                + "(tampered, truncated or replaced file); refusing to use it")
        }
    }

    /// mobile/bundle/io.py `sha256_of`: a file's bytes; a folder (e.g. .mlpackage): for each file, sorted by relative
    /// path (component by component, by code point, as Python sorts `Path`s), the relative POSIX path, "\0", then the
    /// contents, all into one hash. Symlinks inside a folder must stay inside the bundle; symlinked folders are not
    /// descended into (as Python's `rglob`).
    public static func sha256(of path: String, bundleRoot: String? = nil, field: String = "file") throws -> String {
        var hasher = Sha256Stream()
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw BundleError("\(field): \(path) not found")
        }
        if !isDir.boolValue {
            try hashFile(path, into: &hasher, field: field)
            return hasher.hexDigest()
        }
        var files: [[String]] = []
        try walk(path, [], bundleRoot: bundleRoot, field: field, into: &files)
        files.sort { a, b in
            a.lexicographicallyPrecedes(b) { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
        }
        for parts in files {
            hasher.update(Array(parts.joined(separator: "/").utf8) + [0])
            try hashFile(path + "/" + parts.joined(separator: "/"), into: &hasher, field: field)
        }
        return hasher.hexDigest()
    }

    private static func walk(_ base: String, _ rel: [String], bundleRoot: String?, field: String,
                             into files: inout [[String]]) throws {
        let dir = ([base] + rel).joined(separator: "/")
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: dir)
        } catch {
            throw BundleError("\(field): cannot list \(dir): \(error)")
        }
        for name in names {
            let child = rel + [name]
            let full = dir + "/" + name
            let attrs = try? FileManager.default.attributesOfItem(atPath: full)
            let type = attrs?[.type] as? FileAttributeType
            if type == .typeSymbolicLink {
                guard let real = realPath(full) else { continue }  // dangling: not a file (Python skips it)
                if let root = bundleRoot, !inside(real, root) {
                    throw BundleError("\(field): \(child.joined(separator: "/")) is a symlink to \(real), outside the bundle")
                }
                var targetIsDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: real, isDirectory: &targetIsDir), !targetIsDir.boolValue {
                    files.append(child)
                }
            } else if type == .typeDirectory {
                try walk(base, child, bundleRoot: bundleRoot, field: field, into: &files)
            } else if type == .typeRegular {
                files.append(child)
            }
        }
    }

    private static func hashFile(_ path: String, into hasher: inout Sha256Stream, field: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw BundleError("\(field): cannot read \(path)") }
        defer { try? handle.close() }
        while true {
            let chunk = handle.readData(ofLength: 1 << 20)
            if chunk.isEmpty { break }
            hasher.update(chunk)
        }
    }
}
