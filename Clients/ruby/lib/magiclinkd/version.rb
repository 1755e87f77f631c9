# frozen_string_literal: true

module Magiclinkd
  # The version of this client library (not of the daemon: see Client#hello).
  VERSION = "0.1.0"

  # The wire protocol version this client speaks.
  PROTOCOL_VERSION = 1
end
