<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * The daemon answered with an error (`"ok": false`).
 *
 * There is one subclass per error code of the protocol (InvalidTokenException for
 * `invalid_token`, ...). A code this version does not know yet is thrown as a plain
 * ServerException: use isRetryable() to decide whether to try again.
 *
 * getMessage() is "<op>: <the daemon's message> (<code>)"; the daemon's messages never carry
 * secrets. getCode() is always 0 (PHP wants an int): the wire code is getErrorCode().
 */
class ServerException extends \RuntimeException implements MagicLinkException
{
    /** @var array<string, mixed> */
    private array $details;

    /**
     * @param array<string, mixed> $details
     */
    final public function __construct(
        private readonly string $errorCode,
        private readonly string $serverMessage,
        private readonly bool $retryable,
        array $details,
        private readonly string $op = '',
    ) {
        $this->details = $details;
        $prefix = $op === '' ? '' : $op . ': ';
        parent::__construct($prefix . $serverMessage . ' (' . $errorCode . ')');
    }

    /** The wire error code, e.g. "invalid_token". */
    public function getErrorCode(): string
    {
        return $this->errorCode;
    }

    /** The daemon's own message (English, for developers and logs; not for end users). */
    public function getServerMessage(): string
    {
        return $this->serverMessage;
    }

    /** Whether the same request may succeed later unchanged. */
    public function isRetryable(): bool
    {
        return $this->retryable;
    }

    /** @return array<string, mixed> the error's `details` object (possibly empty) */
    public function getDetails(): array
    {
        return $this->details;
    }

    /** The op that failed ("" when unknown). */
    public function getOp(): string
    {
        return $this->op;
    }

    /**
     * Builds the exception for a wire error: the subclass for a known code, else this class.
     *
     * @param array<string, mixed> $details
     */
    public static function fromWire(string $code, string $message, bool $retryable, array $details, string $op = ''): self
    {
        $class = self::CLASSES[$code] ?? self::class;
        return new $class($code, $message, $retryable, $details, $op);
    }

    /** @var array<string, class-string<ServerException>> */
    private const CLASSES = [
        'invalid_request' => InvalidRequestException::class,
        'unknown_op' => UnknownOpException::class,
        'request_too_large' => RequestTooLargeException::class,
        'invalid_email' => InvalidEmailException::class,
        'redirect_not_allowed' => RedirectNotAllowedException::class,
        'rate_limited' => RateLimitedException::class,
        'invalid_token' => InvalidTokenException::class,
        'invalid_session' => InvalidSessionException::class,
        'invalid_code' => InvalidCodeException::class,
        'confirmation_required' => ConfirmationRequiredException::class,
        'flow_mismatch' => FlowMismatchException::class,
        'unavailable' => UnavailableException::class,
        'internal_error' => InternalErrorException::class,
        'permission_denied' => PermissionDeniedException::class,
    ];
}
