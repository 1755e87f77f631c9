# frozen_string_literal: true

module Magiclinkd
  # Base class of every error this library raises (besides ArgumentError for bad arguments).
  #
  #   Error
  #   ├── TransportError          the daemon could not be asked, or its answer could not be read
  #   │   ├── ConnectionError     no socket, refused, connection lost
  #   │   ├── TimeoutError        connect or read timeout
  #   │   └── ProtocolError       reply not JSON, id mismatch, reply too long
  #   └── ServerError             the daemon answered with an error (#code, #retryable?, #details)
  #       ├── InvalidRequest, UnknownOp, RequestTooLarge, InvalidEmail, RedirectNotAllowed,
  #       ├── RateLimited (#retry_after), InvalidToken (#reason), InvalidSession,
  #       ├── InvalidCode (#attempts_left), ConfirmationRequired (#email_masked, #requested_at),
  #       ├── FlowMismatch
  #       └── Unavailable (#reason), InternalError, PermissionDenied
  #
  # Messages never contain tokens, flows, codes, session ids or request parameters.
  class Error < StandardError; end

  # The request could not be completed at the transport level.
  #
  # #request_sent? tells whether the request may have reached the daemon: when it is true and the
  # operation is not safe to repeat (start, callback, logout, ...), its outcome is unknown.
  class TransportError < Error
    def initialize(message = nil, request_sent: false)
      super(message)
      @request_sent = request_sent
    end

    def request_sent?
      @request_sent
    end
  end

  # Cannot connect (socket missing, refused, permission) or the connection was lost.
  class ConnectionError < TransportError; end

  # Connecting or waiting for the reply took longer than the configured timeout.
  class TimeoutError < TransportError; end

  # The daemon's reply could not be understood (not JSON, wrong id, too long).
  class ProtocolError < TransportError; end

  # The daemon answered with an error object. Subclasses exist per wire error code; a code this
  # version does not know (a newer daemon) is raised as ServerError itself: use #retryable?.
  class ServerError < Error
    # wire code => class, filled by the subclasses below
    CLASSES = {} # rubocop:disable Style/MutableConstant

    attr_reader :code, :details

    def initialize(message = nil, code: nil, retryable: false, details: {})
      @code = code || self.class.wire_code
      @retryable = retryable ? true : false
      @details = (details || {}).freeze
      super(message || @code)
    end

    # Whether the same request may succeed later, unchanged (as the daemon says).
    def retryable?
      @retryable
    end

    class << self
      # The wire error code of this class (nil for ServerError itself).
      attr_reader :wire_code

      # Builds the exception for an `error` object of a reply.
      def from_wire(error)
        code = error["code"].to_s
        details = error["details"].is_a?(Hash) ? error["details"] : {}
        message = error["message"].is_a?(String) ? error["message"] : code
        klass = CLASSES.fetch(code, ServerError)
        klass.new("#{message} (#{code})", code: code, retryable: error["retryable"] == true,
                                          details: details)
      end

      private

      def wire(code)
        @wire_code = code
        CLASSES[code] = self
      end
    end
  end

  # Malformed request or a missing / wrong-typed parameter; #field names it ("params.email").
  class InvalidRequest < ServerError
    wire "invalid_request"
    def field
      details["field"]
    end
  end

  # The daemon does not know the operation (an older daemon?); #op names it.
  class UnknownOp < ServerError
    wire "unknown_op"
    def op
      details["op"]
    end
  end

  # The request line was longer than the daemon accepts; it then closed the connection.
  class RequestTooLarge < ServerError
    wire "request_too_large"
    def max_line_bytes
      details["max_line_bytes"]
    end
  end

  # The address is not a valid plain address (show the form again).
  class InvalidEmail < ServerError
    wire "invalid_email"
  end

  # `redirect` is neither a local path nor a URL of an allowed origin.
  class RedirectNotAllowed < ServerError
    wire "redirect_not_allowed"
  end

  # Too many login requests; try again in #retry_after seconds (Integer, >= 1).
  class RateLimited < ServerError
    wire "rate_limited"
    def retry_after
      value = details["retry_after_s"]
      value.is_a?(Numeric) ? value.ceil : nil
    end
  end

  # The login link is not usable; #reason is "unknown", "expired" or "used".
  class InvalidToken < ServerError
    wire "invalid_token"
    def reason
      details["reason"]
    end
  end

  # The session is unknown, logged out or expired: treat the user as signed out.
  class InvalidSession < ServerError
    wire "invalid_session"
  end

  # verify_code: the code is wrong. #attempts_left (Integer) wrong codes may still be tried for
  # this flow; at 0 the flow's code is dead (the link still works; a new start sends a new code).
  class InvalidCode < ServerError
    wire "invalid_code"
    def attempts_left
      value = details["attempts_left"]
      value.is_a?(Integer) ? value : nil
    end
  end

  # callback: the link was opened without the flow of the browser that asked for it (another
  # device, or a link someone else requested: login CSRF). Ask the user "Sign in as
  # #email_masked?" (requested at #requested_at, Unix seconds) and repeat the callback with
  # `confirm: true` when they agree. The token is untouched.
  class ConfirmationRequired < ServerError
    wire "confirmation_required"
    def email_masked
      details["email_masked"]
    end

    def requested_at
      value = details["requested_at"]
      value.is_a?(Integer) ? value : nil
    end
  end

  # callback under `flow_binding: strict`: the link was opened without its flow; confirming
  # does not help. The user must open it in the browser where they asked for it.
  class FlowMismatch < ServerError
    wire "flow_mismatch"
  end

  # An admin operation from a peer that is not an administrator.
  class PermissionDenied < ServerError
    wire "permission_denied"
  end

  # The daemon cannot serve now (busy, shutting down, mail queue full); retryable.
  class Unavailable < ServerError
    wire "unavailable"
    def reason
      details["reason"]
    end
  end

  # A bug in the daemon; the message says nothing about internals.
  class InternalError < ServerError
    wire "internal_error"
  end

  ServerError::CLASSES.freeze
end
