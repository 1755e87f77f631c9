import MagicLinkCore
import MagicLinkProtocol

/// The apps one daemon serves, by id, and the rule for finding a request's app: `params.app`,
/// which may be left out when only one app is configured.
struct AppDirectory: Sendable {
    let authenticators: [String: Authenticator]
    /// In configuration order.
    let ids: [String]

    init(_ apps: [(id: String, authenticator: Authenticator)]) {
        authenticators = Dictionary(uniqueKeysWithValues: apps.map { ($0.id, $0.authenticator) })
        ids = apps.map(\.id)
    }

    func resolve(_ params: Params) throws -> Authenticator {
        guard let id = try params.optionalString("app") else {
            guard ids.count == 1, let only = authenticators[ids[0]] else {
                throw WireError.invalidField("params.app", "is required: this daemon serves several apps (\(ids.joined(separator: ", "))).")
            }
            return only
        }
        guard let authenticator = authenticators[id] else {
            throw WireError.invalidField("params.app", "is not an app of this daemon (\(ids.joined(separator: ", "))).")
        }
        return authenticator
    }
}
