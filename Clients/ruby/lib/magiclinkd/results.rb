# frozen_string_literal: true

require_relative "errors"

module Magiclinkd
  # Behaviour shared by the result values: keyword Structs that are frozen once built, compare by
  # value, support pattern matching (`in {user: {email:}}`), and never show secret members in
  # #inspect, #to_s or pp output. Times are Integer Unix seconds, as on the wire: Time.at(x).
  module Value
    FILTERED = "[FILTERED]"

    def initialize(**members)
      super
      freeze
    end

    def inspect
      secret = self.class.const_defined?(:SECRET_MEMBERS) ? self.class::SECRET_MEMBERS : []
      shown = each_pair.map do |name, value|
        "#{name}=#{secret.include?(name) && !value.nil? ? FILTERED : value.inspect}"
      end
      "#<#{self.class.name} #{shown.join(', ')}>"
    end
    alias to_s inspect

    def pretty_print(pp)
      pp.text(inspect)
    end

    # @api private
    # Helpers for building values from a decoded reply; a missing or wrong-typed member the
    # client relies on is a ProtocolError. Unknown members are ignored (newer daemons add some).
    module Wire
      module_function

      def fetch(hash, name, *types, optional: false)
        raise ProtocolError, "malformed result from magiclinkd: not an object" unless hash.is_a?(Hash)

        value = hash[name]
        return nil if value.nil? && optional
        return value if types.any? { |t| t === value } # rubocop:disable Style/CaseEquality

        raise ProtocolError, "malformed result from magiclinkd: member #{name.inspect} missing or of the wrong type"
      end

      def time(hash, name, optional: false)
        fetch(hash, name, Integer, optional: optional)
      end

      def list(hash, name)
        fetch(hash, name, Array)
      end
    end
  end

  # The user a session belongs to. #id is a stable lower-case UUID; #email as first seen.
  User = Struct.new(:id, :email, keyword_init: true) do
    include Value

    def self.from_wire(h)
      new(id: Value::Wire.fetch(h, "id", String), email: Value::Wire.fetch(h, "email", String))
    end
  end

  # Result of Client#hello. #apps lists the ids of the apps the daemon serves (give one to
  # Client.new(app:) when there are several); nil from a daemon older than apps.
  ServerInfo = Struct.new(:server, :version, :protocol, :ops, :max_line_bytes, :apps, keyword_init: true) do
    include Value

    def self.from_wire(h)
      w = Value::Wire
      new(server: w.fetch(h, "server", String), version: w.fetch(h, "version", String),
          protocol: w.fetch(h, "protocol", Integer), ops: w.list(h, "ops").dup.freeze,
          max_line_bytes: w.fetch(h, "max_line_bytes", Integer),
          apps: w.fetch(h, "apps", Array, optional: true)&.dup&.freeze)
    end
  end

  # Result of Client#start: when the emailed link (and code) stop working, and the #flow: a
  # secret for the browser that asked, to keep in an HttpOnly, SameSite=Lax cookie and pass to
  # peek, callback and verify_code. #inspect shows it as [FILTERED].
  StartResult = Struct.new(:expires_at, :flow, keyword_init: true) do
    include Value
    self::SECRET_MEMBERS = %i[flow].freeze

    def self.from_wire(h)
      new(expires_at: Value::Wire.time(h, "expires_at"), flow: Value::Wire.fetch(h, "flow", String))
    end
  end

  # Result of Client#peek: what a link's token is, without using it. #valid? (usable now);
  # else #reason "unknown", "expired" or "used". #flow_matches? says the flow given was the one
  # of the token's start (the same browser). #email_masked ("a***@example.com") and
  # #expires_at are there for tokens that exist (nil for unknown ones).
  PeekResult = Struct.new(:valid, :reason, :flow_matches, :email_masked, :expires_at, keyword_init: true) do
    include Value

    def valid?
      valid
    end

    def flow_matches?
      flow_matches
    end

    def self.from_wire(h)
      w = Value::Wire
      new(valid: w.fetch(h, "valid", true, false), reason: w.fetch(h, "reason", String, optional: true),
          flow_matches: w.fetch(h, "flow_matches", true, false),
          email_masked: w.fetch(h, "email_masked", String, optional: true),
          expires_at: w.time(h, "expires_at", optional: true))
    end
  end

  # Result of Client#callback: a new session. Set #session as the cookie value; it is a secret
  # and is shown as [FILTERED] by #inspect.
  Login = Struct.new(:session, :expires_at, :idle_expires_at, :user, :redirect, keyword_init: true) do
    include Value
    self::SECRET_MEMBERS = %i[session].freeze

    def self.from_wire(h)
      w = Value::Wire
      new(session: w.fetch(h, "session", String), expires_at: w.time(h, "expires_at"),
          idle_expires_at: w.time(h, "idle_expires_at"), user: User.from_wire(w.fetch(h, "user", Hash)),
          redirect: w.fetch(h, "redirect", String))
    end
  end

  # Result of Client#session: whose session it is and when it ends.
  SessionInfo = Struct.new(:user, :expires_at, :idle_expires_at, keyword_init: true) do
    include Value

    def self.from_wire(h)
      w = Value::Wire
      new(user: User.from_wire(w.fetch(h, "user", Hash)), expires_at: w.time(h, "expires_at"),
          idle_expires_at: w.time(h, "idle_expires_at"))
    end
  end

  # Mail queue counts in AdminStatus#mail.
  MailCounts = Struct.new(:queued, :sending, :sent, :failed, :expired, keyword_init: true) do
    include Value

    def self.from_wire(h)
      new(**members.to_h { |m| [m, Value::Wire.fetch(h, m.to_s, Integer)] })
    end
  end

  # What became of peeked links, in AdminStatus#links: #peeked_never_used (mail scanners, link
  # previews, people who gave up) and #peeked_then_used.
  LinkCounts = Struct.new(:peeked_never_used, :peeked_then_used, keyword_init: true) do
    include Value

    def self.from_wire(h)
      new(**members.to_h { |m| [m, Value::Wire.fetch(h, m.to_s, Integer)] })
    end
  end

  # The daemon's memory of live sessions, in AdminStatus#session_cache: #capacity (0 when off),
  # #entries held, #hits (session calls answered from it), #misses (well-formed ones that were not).
  SessionCacheCounts = Struct.new(:capacity, :entries, :hits, :misses, keyword_init: true) do
    include Value

    def self.from_wire(h)
      new(**members.to_h { |m| [m, Value::Wire.fetch(h, m.to_s, Integer)] })
    end
  end

  # Result of Client#admin_status. #links is nil from a daemon older than peek, #session_cache
  # from one without a session cache.
  AdminStatus = Struct.new(:version, :started_at, :uptime_s, :users, :live_sessions, :mail, :links,
                           :session_cache, keyword_init: true) do
    include Value

    def self.from_wire(h)
      w = Value::Wire
      new(version: w.fetch(h, "version", String), started_at: w.time(h, "started_at"),
          uptime_s: w.fetch(h, "uptime_s", Integer), users: w.fetch(h, "users", Integer),
          live_sessions: w.fetch(h, "live_sessions", Integer),
          mail: MailCounts.from_wire(w.fetch(h, "mail", Hash)),
          links: (links = w.fetch(h, "links", Hash, optional: true)) && LinkCounts.from_wire(links),
          session_cache: (cache = w.fetch(h, "session_cache", Hash, optional: true)) &&
            SessionCacheCounts.from_wire(cache))
    end
  end

  # One live session in Client#admin_sessions. #handle names it without being usable as one.
  AdminSession = Struct.new(:handle, :user_id, :email, :created_at, :expires_at, :idle_expires_at,
                            :ip, :user_agent, keyword_init: true) do
    include Value

    def self.from_wire(h)
      w = Value::Wire
      new(handle: w.fetch(h, "handle", String), user_id: w.fetch(h, "user_id", String),
          email: w.fetch(h, "email", String), created_at: w.time(h, "created_at"),
          expires_at: w.time(h, "expires_at"), idle_expires_at: w.time(h, "idle_expires_at"),
          ip: w.fetch(h, "ip", String, optional: true),
          user_agent: w.fetch(h, "user_agent", String, optional: true))
    end
  end

  # One undelivered message in Client#admin_dead_letters.
  DeadLetter = Struct.new(:message_id, :recipient, :state, :attempts, :created_at, :expires_at,
                          :finished_at, :last_error, keyword_init: true) do
    include Value

    def self.from_wire(h)
      w = Value::Wire
      new(message_id: w.fetch(h, "message_id", String), recipient: w.fetch(h, "recipient", String),
          state: w.fetch(h, "state", String), attempts: w.fetch(h, "attempts", Integer),
          created_at: w.time(h, "created_at"), expires_at: w.time(h, "expires_at"),
          finished_at: w.time(h, "finished_at", optional: true),
          last_error: w.fetch(h, "last_error", String, optional: true))
    end
  end

  # Result of Client#admin_retry: #retried?, else #reason ("not_found", "not_a_dead_letter",
  # "link_expired").
  RetryResult = Struct.new(:retried, :reason, keyword_init: true) do
    include Value

    def retried?
      retried
    end

    def self.from_wire(h)
      w = Value::Wire
      new(retried: w.fetch(h, "retried", true, false), reason: w.fetch(h, "reason", String, optional: true))
    end
  end

  # Result of Client#admin_create_user: the #user with that address, and #created? (false when
  # the address already had a user, which is returned unchanged).
  CreateUserResult = Struct.new(:user, :created, keyword_init: true) do
    include Value

    def created?
      created
    end

    def self.from_wire(h)
      w = Value::Wire
      new(user: User.from_wire(w.fetch(h, "user", Hash)), created: w.fetch(h, "created", true, false))
    end
  end
end
