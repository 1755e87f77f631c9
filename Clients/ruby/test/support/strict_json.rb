# frozen_string_literal: true

module TestSupport
  # A strict RFC 8259 parser used only to sort vector cases: it accepts exactly what the
  # protocol calls a valid request line (no BOM, no duplicate member names, depth <= 64, numbers
  # within the double range, no lone surrogates), and returns Integer only for literals written
  # without fraction or exponent.
  # Ruby's JSON parser is more lenient (duplicates, depth), so it cannot make that call.
  class StrictJSON
    class Invalid < StandardError; end

    MAX_DEPTH = 64
    WS = [" ", "\t", "\n", "\r"].freeze

    def self.parse(text)
      new(text).parse
    end

    def initialize(text)
      raise Invalid, "not UTF-8" unless text.encoding == Encoding::UTF_8 && text.valid_encoding?

      @s = text
      @i = 0
    end

    # Returns the value: Hash, Array, String, Integer (only for literals without fraction or
    # exponent), Float, true, false or nil.
    def parse
      skip_ws
      value = parse_value(0)
      skip_ws
      raise Invalid, "trailing characters" unless @i == @s.length

      value
    end

    private

    def peek = @s[@i]

    def skip_ws
      @i += 1 while @i < @s.length && WS.include?(@s[@i])
    end

    def expect(char)
      raise Invalid, "expected #{char}" unless @s[@i] == char

      @i += 1
    end

    def parse_value(depth)
      case peek
      when "{" then parse_object(depth + 1)
      when "[" then parse_array(depth + 1)
      when '"' then parse_string
      when "t" then literal("true", true)
      when "f" then literal("false", false)
      when "n" then literal("null", nil)
      when "-", "0".."9" then parse_number
      else raise Invalid, "unexpected character"
      end
    end

    def literal(word, value)
      raise Invalid, "bad literal" unless @s[@i, word.length] == word

      @i += word.length
      value
    end

    def parse_object(depth)
      raise Invalid, "too deep" if depth > MAX_DEPTH

      expect("{")
      hash = {}
      skip_ws
      if peek == "}"
        @i += 1
        return hash
      end
      loop do
        skip_ws
        raise Invalid, "expected name" unless peek == '"'

        key = parse_string
        raise Invalid, "duplicate name" if hash.key?(key)

        skip_ws
        expect(":")
        skip_ws
        hash[key] = parse_value(depth)
        skip_ws
        case peek
        when "," then @i += 1
        when "}"
          @i += 1
          return hash
        else raise Invalid, "expected , or }"
        end
      end
    end

    def parse_array(depth)
      raise Invalid, "too deep" if depth > MAX_DEPTH

      expect("[")
      array = []
      skip_ws
      if peek == "]"
        @i += 1
        return array
      end
      loop do
        skip_ws
        array << parse_value(depth)
        skip_ws
        case peek
        when "," then @i += 1
        when "]"
          @i += 1
          return array
        else raise Invalid, "expected , or ]"
        end
      end
    end

    ESCAPES = { '"' => '"', "\\" => "\\", "/" => "/", "b" => "\b", "f" => "\f", "n" => "\n",
                "r" => "\r", "t" => "\t" }.freeze

    def parse_string
      expect('"')
      out = +""
      loop do
        c = @s[@i] or raise Invalid, "unterminated string"
        @i += 1
        case c
        when '"' then return out
        when "\\"
          e = @s[@i] or raise Invalid, "unterminated escape"
          @i += 1
          if ESCAPES.key?(e)
            out << ESCAPES[e]
          elsif e == "u"
            out << parse_unicode_escape
          else
            raise Invalid, "bad escape"
          end
        else
          raise Invalid, "control character in string" if c.ord < 0x20

          out << c
        end
      end
    end

    def hex4
      h = @s[@i, 4]
      raise Invalid, "bad \\u escape" unless h&.match?(/\A\h{4}\z/)

      @i += 4
      h.to_i(16)
    end

    def parse_unicode_escape
      cp = hex4
      if (0xD800..0xDBFF).cover?(cp)
        raise Invalid, "lone surrogate" unless @s[@i, 2] == "\\u"

        @i += 2
        low = hex4
        raise Invalid, "lone surrogate" unless (0xDC00..0xDFFF).cover?(low)

        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
      elsif (0xDC00..0xDFFF).cover?(cp)
        raise Invalid, "lone surrogate"
      end
      cp.chr(Encoding::UTF_8)
    end

    NUMBER = /\G-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.freeze

    def parse_number
      m = NUMBER.match(@s, @i) or raise Invalid, "bad number"
      @i = m.end(0)
      text = m[0]
      return Integer(text, 10) unless m[1] || m[2]

      value = Float(text)
      raise Invalid, "number out of range" unless value.finite?

      value
    end
  end
end
