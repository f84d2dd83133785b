import Foundation
import Logging
import SluiceCore
import Synchronization
import SluiceSupport

#if canImport(Glibc)
import Glibc
#endif

// The parts of `sluice batch` that touch files: the input read line by line, the
// output scanned for resuming then appended to.

/// A failure of the batch's own machinery (files, broker), as opposed to a failed job.
struct BatchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The bytes of a custom_id hashed for the sets that detect duplicates and skip what the
/// output already has: 8 bytes per id, so a run of millions of lines stays small. The
/// seed is per process, which is all these sets need. A collision (about 1 in 10^7 for a
/// million ids) would make a line look like a duplicate, and it would be reported as one.
func customIDHash(_ id: String) -> Int {
    var hasher = Hasher()
    var id = id
    id.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    return hasher.finalize()
}

/// Reads a file line by line with `getline`, so that only one line is in memory.
/// Not Sendable: used by the one task that reads the input.
final class LineReader {
    private let file: UnsafeMutablePointer<FILE>
    private var buffer: UnsafeMutablePointer<CChar>?
    private var capacity = 0
    let path: String

    init(path: String, mode: String = "r") throws {
        guard let file = fopen(path, mode) else {
            throw BatchError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        self.file = file
        self.path = path
    }

    /// The next line, its newline included if it has one; nil at the end of the file.
    func next() throws -> [UInt8]? {
        let n = getline(&buffer, &capacity, file)
        if n < 0 {
            if ferror(file) != 0 { throw BatchError("cannot read \(path): \(String(cString: strerror(errno)))") }
            return nil
        }
        return buffer.map { Array(UnsafeRawBufferPointer(start: $0, count: n)) } ?? []
    }

    deinit {
        free(buffer)
        fclose(file)
    }
}

extension Array where Element == UInt8 {
    /// The line without its trailing newline (`\n` or `\r\n`).
    var withoutNewline: ArraySlice<UInt8> {
        var end = count
        if end > 0, self[end - 1] == 0x0A { end -= 1 }
        if end > 0, self[end - 1] == 0x0D { end -= 1 }
        return self[0..<end]
    }
}

extension Collection where Element == UInt8 {
    var isBlank: Bool { allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0A } }
}

/// The output file: scanned once for the custom_ids it already has, then appended to,
/// one `write(2)` per result line so that each line is whole on disk as soon as it is
/// written and an interrupted run loses nothing it had received.
final class BatchOutput: Sendable {
    struct Existing {
        /// Hashes of the custom_ids already present.
        var done: Set<Int> = []
        var lines = 0
        /// Lines that are not result lines (they are left alone, and their requests run).
        var unreadable: [Int] = []
        /// A torn last line (an interrupted write) that was cut off.
        var repairedTail = false
    }

    let path: String
    private let fd: Int32

    /// Reads what `path` already holds (creating it if it does not exist), repairs a torn
    /// last line, and opens it for appending.
    static func open(_ path: String) throws -> (BatchOutput, Existing) {
        var existing = Existing()
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDir) {
            guard !isDir.boolValue else { throw BatchError("the output \(path) is a directory; give a file path") }
            let reader = try LineReader(path: path)
            var goodEnd: off_t = 0
            var tornTail: [UInt8]?
            while let line = try reader.next() {
                guard line.last == 0x0A else {
                    tornTail = line
                    break
                }
                existing.lines += 1
                goodEnd += off_t(line.count)
                let body = line.withoutNewline
                if body.isBlank { continue }
                if let id = BatchFormat.customID(ofOutputLine: body) {
                    existing.done.insert(customIDHash(id))
                } else {
                    existing.unreadable.append(existing.lines)
                }
            }
            if let tail = tornTail {
                if let id = BatchFormat.customID(ofOutputLine: tail) {
                    // A whole line that only lacks its newline (an editor may drop it).
                    existing.lines += 1
                    existing.done.insert(customIDHash(id))
                    goodEnd += off_t(tail.count)
                    let fd = Glibc.open(path, O_WRONLY | O_APPEND)
                    guard fd >= 0 else { throw BatchError("cannot write to \(path): \(String(cString: strerror(errno)))") }
                    defer { _ = Glibc.close(fd) }
                    guard Glibc.write(fd, "\n", 1) == 1 else { throw BatchError("cannot write to \(path): \(String(cString: strerror(errno)))") }
                } else {
                    guard truncate(path, goodEnd) == 0 else {
                        throw BatchError("cannot repair the torn last line of \(path): \(String(cString: strerror(errno)))")
                    }
                    existing.repairedTail = true
                }
            }
        }
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BatchError("cannot open the output \(path) for writing: \(String(cString: strerror(errno)))") }
        return (BatchOutput(path: path, fd: fd), existing)
    }

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    /// Appends one line in a single write (retried only for the part not yet written).
    func append(_ line: [UInt8]) throws {
        try line.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw BatchError("cannot write to \(path): \(String(cString: strerror(errno)))")
                }
                offset += n
            }
        }
    }

    /// Flushes to disk and closes.
    func close() {
        _ = fsync(fd)
        _ = Glibc.close(fd)
    }
}
