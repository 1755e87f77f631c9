// Reading a template override directory with plain system calls (no Foundation).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What the files of a `templates_dir` say: locale → kind → part → (source, file path).
struct TemplateDirectoryContents {
    var files: [String: [MailKind: [TemplatePart: (source: String, path: String)]]] = [:]
}

enum TemplateFiles {
    /// Largest template file accepted; a login mail template is a few kilobytes.
    static let maxFileBytes = 256 * 1024

    /// Reads `<dir>/<locale>/<kind>.<part>.mustache`. Ignores files and folders that are not
    /// templates; throws for `.mustache` files it cannot place (unknown kind or part, outside a
    /// locale folder, in a folder whose name is not a language tag) and for duplicates.
    static func load(directory: String) throws(TemplateError) -> TemplateDirectoryContents {
        var root = directory
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        if root.isEmpty { throw TemplateError(file: directory, reason: "empty templates directory path") }
        guard isDirectory(root) else {
            throw TemplateError(file: root, reason: "templates directory: \(lastError(root))")
        }

        var contents = TemplateDirectoryContents()
        var folderOfLocale: [String: String] = [:]  // locale → folder name, to catch pt-BR beside pt-br
        for name in try listDirectory(root) {
            let path = root + "/" + name
            if isDirectory(path) {
                let entries = try listDirectory(path)
                let templateNames = entries.filter { isTemplateFileName($0) && isRegularFile(path + "/" + $0) }
                guard !templateNames.isEmpty else { continue }  // .git, assets, notes: not ours
                guard let locale = TemplateCatalog.normalizedLocale(name) else {
                    throw TemplateError(
                        file: path + "/" + templateNames[0],
                        reason: "folder \"\(name)\" is not a language tag (BCP 47 with hyphens, e.g. en, pt, pt-br)")
                }
                if let other = folderOfLocale[locale] {
                    throw TemplateError(file: path, reason: "folders \"\(other)\" and \"\(name)\" are the same locale \(locale)")
                }
                folderOfLocale[locale] = name
                var seen: [String: String] = [:]  // "kind.part" → file name
                for fileName in templateNames {
                    let filePath = path + "/" + fileName
                    let (kind, part) = try parseTemplateFileName(fileName, path: filePath)
                    let key = kind.rawValue + "." + part.rawValue
                    if let other = seen[key] {
                        throw TemplateError(file: filePath, reason: "same template as \"\(other)\" (names are case-insensitive)")
                    }
                    seen[key] = fileName
                    let source = try readTemplate(filePath)
                    contents.files[locale, default: [:]][kind, default: [:]][part] = (source, filePath)
                }
            } else if isTemplateFileName(name) && isRegularFile(path) {
                throw TemplateError(
                    file: path,
                    reason: "template outside a locale folder: put it in a folder named for its locale, e.g. \(root)/\(TemplateCatalog.defaultLocale)/")
            }
        }
        return contents
    }

    static func isTemplateFileName(_ name: String) -> Bool {
        name.lowercased().hasSuffix(".mustache") && !name.hasPrefix(".")
    }

    /// "login.subject.mustache" → (.login, .subject), case-insensitively.
    static func parseTemplateFileName(_ name: String, path: String) throws(TemplateError) -> (MailKind, TemplatePart) {
        let stem = name.lowercased().dropLast(".mustache".count)
        let pieces = stem.split(separator: ".", omittingEmptySubsequences: false)
        let kinds = MailKind.allCases.map(\.rawValue).joined(separator: ", ")
        let parts = TemplatePart.allCases.map(\.rawValue).joined(separator: ", ")
        let expected = "expected <kind>.<part>.mustache with kind \(kinds) and part \(parts)"
        guard pieces.count == 2 else {
            throw TemplateError(file: path, reason: "unknown template file name \"\(name)\": \(expected)")
        }
        guard let kind = MailKind(rawValue: String(pieces[0])) else {
            throw TemplateError(file: path, reason: "unknown message kind \"\(pieces[0])\" in \"\(name)\": \(expected)")
        }
        guard let part = TemplatePart(rawValue: String(pieces[1])) else {
            throw TemplateError(file: path, reason: "unknown template part \"\(pieces[1])\" in \"\(name)\": \(expected)")
        }
        return (kind, part)
    }

    // MARK: - System calls

    /// Entry names (without "." and ".."), sorted so that errors are reported in a stable order.
    static func listDirectory(_ path: String) throws(TemplateError) -> [String] {
        guard let dir = opendir(path) else {
            throw TemplateError(file: path, reason: "cannot list directory: \(lastError(path))")
        }
        defer { closedir(dir) }
        var names: [String] = []
        errno = 0
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: pointer.pointee)) {
                    String(cString: $0)
                }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        if errno != 0 {
            throw TemplateError(file: path, reason: "cannot list directory: \(String(cString: strerror(errno)))")
        }
        return names.sorted()
    }

    private static func fileType(_ path: String) -> mode_t? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }  // follows symbolic links
        return st.st_mode & S_IFMT
    }

    static func isDirectory(_ path: String) -> Bool { fileType(path) == S_IFDIR }
    static func isRegularFile(_ path: String) -> Bool { fileType(path) == S_IFREG }

    private static func lastError(_ path: String) -> String {
        var st = stat()
        if stat(path, &st) != 0 { return String(cString: strerror(errno)) }
        return (st.st_mode & S_IFMT) == S_IFDIR ? "unreadable" : "not a directory"
    }

    /// The file as UTF-8 text, without a byte-order mark and with CRLF line ends made LF.
    static func readTemplate(_ path: String) throws(TemplateError) -> String {
        var fd: Int32
        repeat { fd = open(path, O_RDONLY | O_CLOEXEC) } while fd < 0 && errno == EINTR
        if fd < 0 { throw TemplateError(file: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
        defer { _ = close(fd) }

        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw TemplateError(file: path, reason: "cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
            if bytes.count > maxFileBytes {
                throw TemplateError(file: path, reason: "larger than \(maxFileBytes / 1024) KiB")
            }
        }

        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count)
        for (i, b) in bytes.enumerated() where !(b == 13 && i + 1 < bytes.count && bytes[i + 1] == 10) {
            text.append(b)
        }
        let string = String(decoding: text, as: UTF8.self)
        // Decoding repairs invalid sequences with U+FFFD; a round trip that differs means bad UTF-8.
        guard string.utf8.elementsEqual(text) else {
            throw TemplateError(file: path, reason: "not valid UTF-8 text")
        }
        return string
    }
}
