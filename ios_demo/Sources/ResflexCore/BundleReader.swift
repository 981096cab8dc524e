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
        if policy != nil { p = try Policy.parse(try Document.read(url.path, name: Policy.file), base: base, source: Policy.file) }
        var units: [String: [String]] = [:]
        for a in manifest.artifacts { if let u = a.computeUnits { units[a.file] = u } }
        return try OperatingPointSelector(lut: lut, device: device, policy: p, computeUnits: units)
    }
}

/// Opens a bundle folder: manifest.json, lut.json, optional selector_policy.json; checks kind and major version;
/// refuses a bundle holding a symlink or a special file (FIFO, socket, device) anywhere, documents over 64 MB or
/// nested too deeply, artifact paths that are absolute or contain `..`; and verifies the sha256 of every artifact of
/// the requested backends before anything uses it. Every error is a `BundleError`.
///
///     let bundle = try BundleReader.open(url, backends: ["coreml"])
public enum BundleReader {
    /// `backends`: verify only the artifacts of these backends (nil: all). Others stay unusable (`url(of:)` throws).
    public static func open(_ root: URL, backends: Set<String>? = nil) throws -> ResflexBundle {
        do {
            return try openChecked(root, backends: backends)
        } catch let e as BundleError {
            throw e
        } catch let e as SchemaError {
            throw BundleError(e.message)
        } catch let e as PolicyError {
            throw BundleError(e.message)
        } catch {
            throw BundleError("\(root.path): cannot be read: \(error)")
        }
    }

    private static func openChecked(_ root: URL, backends: Set<String>?) throws -> ResflexBundle {
        guard let rootReal = realPath(root.path) else { throw BundleError("\(root.path): bundle folder not found") }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: rootReal, isDirectory: &isDir), isDir.boolValue else {
            throw BundleError("\(root.path): not a folder")
        }
        try checkTree(rootReal)
        let manifest = try Manifest.parse(try Document.read(rootReal + "/" + Manifest.file, name: Manifest.file),
                                          source: Manifest.file)
        let lut = try Lut.parse(try Document.read(rootReal + "/lut.json", name: "lut.json"), source: "lut.json")
        var policy: Policy? = nil
        let policyPath = rootReal + "/" + Policy.file
        if Document.exists(policyPath) {
            policy = try Policy.parse(try Document.read(policyPath, name: Policy.file), source: Policy.file)
        }
        // Every path, whatever its backend, must be safe; only the requested backends are hashed.
        for (i, a) in manifest.artifacts.enumerated() {
            try checkSafe(a.file, field: "\(Manifest.file): artifacts[\(i)].file")
            for (j, x) in a.extraFiles.enumerated() {
                try checkSafe(x.file, field: "\(Manifest.file): artifacts[\(i)].extra_files[\(j)].file")
            }
        }
        for (i, op) in lut.operatingPoints.enumerated() {
            try checkSafe(op.artifact, field: "lut.json: operating_points[\(i)].artifact")
            if let units = manifest.artifact(file: op.artifact)?.computeUnits, !units.contains(op.computeUnit) {
                throw BundleError("lut.json: operating_points[\(i)].compute_unit \(op.computeUnit): manifest.json offers " +
                                  "\(op.artifact) on \(units.joined(separator: ", ")) only" + (units == ["CPU"] ?
                                  " (a CPU-only artifact: its bias scales are ones only the CPU kernels ignore)" : ""))
            }
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

    /// Every entry under the bundle folder, listed in the manifest or not, must be a regular file or a folder: no
    /// symlink (wherever it points), no FIFO, socket or device. lstat only: nothing is followed or opened.
    static func checkTree(_ root: String) throws {
        var folders = [""]
        while let rel = folders.popLast() {
            let dir = rel.isEmpty ? root : root + "/" + rel
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: dir)
            } catch {
                throw BundleError("\(dir): cannot list the folder: \(error)")
            }
            for name in names.sorted() {
                let child = rel.isEmpty ? name : rel + "/" + name
                if try entryType(root + "/" + child, name: child) == S_IFDIR { folders.append(child) }
            }
        }
    }

    /// S_IFDIR or S_IFREG for what is at `path` (not following a symlink); a symlink or special file is refused.
    static func entryType(_ path: String, name: String) throws -> mode_t {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            throw BundleError("\(name): cannot be read: \(String(cString: strerror(errno)))")
        }
        let type = st.st_mode & S_IFMT
        if type == S_IFLNK { throw BundleError("\(name): is a symlink; a bundle may not contain symlinks") }
        if type != S_IFDIR && type != S_IFREG {
            throw BundleError("\(name): is not a regular file or folder (a FIFO, socket or device); a bundle holds " +
                              "only files and folders")
        }
        return type
    }

    /// mobile/bundle/schema.py `safe_relpath` (`SchemaRules.pathProblem`): relative, POSIX, canonical (no `.`, `..`
    /// or empty parts), no `~`, no control characters, not empty.
    public static func checkSafe(_ path: String, field: String) throws {
        if let problem = SchemaRules.pathProblem(path) { throw BundleError("\(field): \(problem)") }
    }

    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    static func verify(_ path: String, sha256 expected: String, root: String, field: String) throws {
        let full = root + "/" + path
        guard Document.exists(full) else { throw BundleError("\(field).file: \(path) is missing from the bundle") }
        var files = [path]
        if try entryType(full, name: path) == S_IFDIR {
            guard path.hasSuffix(".mlpackage") else {
                throw BundleError("\(field).file: \(path) is a folder; only a .mlpackage artifact may be a folder")
            }
            files = (FileManager.default.enumerator(atPath: full)?.allObjects as? [String] ?? []).map { path + "/" + $0 }
        }
        // As Python: a listed file shared by hard links with a file elsewhere could change without the bundle changing.
        for f in files {
            var st = stat()
            if lstat(root + "/" + f, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_nlink > 1 {
                throw BundleError("\(field).file: \(f) has other hard links; a bundle's files may not be shared with "
                                  + "files elsewhere")
            }
        }
        let got = try sha256(of: full, field: "\(field).file")
        if got != expected.lowercased() {
            throw BundleError("\(field).sha256: \(path) has sha256 \(got), the manifest says \(expected) "
                + "(tampered, truncated or replaced file); refusing to use it")
        }
    }

    /// mobile/bundle/io.py `sha256_of`: a file's bytes; a folder (e.g. .mlpackage): for each file, sorted by relative
    /// path (component by component, by code point, as Python sorts `Path`s), the relative POSIX path, "\0", then the
    /// contents, all into one hash. A symlink or special file, at `path` or inside it, is refused (never opened).
    public static func sha256(of path: String, field: String = "file") throws -> String {
        var hasher = Sha256Stream()
        guard Document.exists(path) else { throw BundleError("\(field): \(path) not found") }
        if try entryType(path, name: "\(field): \(path)") != S_IFDIR {
            try hashFile(path, into: &hasher, field: field)
            return hasher.hexDigest()
        }
        var files: [[String]] = []
        try walk(path, [], field: field, into: &files)
        files.sort { a, b in
            a.lexicographicallyPrecedes(b) { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
        }
        for parts in files {
            hasher.update(Array(parts.joined(separator: "/").utf8) + [0])
            try hashFile(path + "/" + parts.joined(separator: "/"), into: &hasher, field: field)
        }
        return hasher.hexDigest()
    }

    private static func walk(_ base: String, _ rel: [String], field: String, into files: inout [[String]]) throws {
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
            if try entryType(full, name: "\(field): \(child.joined(separator: "/"))") == S_IFDIR {
                try walk(base, child, field: field, into: &files)
            } else {
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
