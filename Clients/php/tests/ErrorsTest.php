<?php

declare(strict_types=1);

namespace MagicLink\Tests;

use MagicLink\Client;
use MagicLink\Exception\ConfirmationRequiredException;
use MagicLink\Exception\ConnectionException;
use MagicLink\Exception\FlowMismatchException;
use MagicLink\Exception\InvalidCodeException;
use MagicLink\Exception\InternalErrorException;
use MagicLink\Exception\InvalidArgumentException;
use MagicLink\Exception\InvalidEmailException;
use MagicLink\Exception\InvalidRequestException;
use MagicLink\Exception\InvalidSessionException;
use MagicLink\Exception\InvalidTokenException;
use MagicLink\Exception\MagicLinkException;
use MagicLink\Exception\PermissionDeniedException;
use MagicLink\Exception\ProtocolException;
use MagicLink\Exception\RateLimitedException;
use MagicLink\Exception\RedirectNotAllowedException;
use MagicLink\Exception\RequestTooLargeException;
use MagicLink\Exception\ServerException;
use MagicLink\Exception\TimeoutException;
use MagicLink\Exception\TransportException;
use MagicLink\Exception\UnavailableException;
use MagicLink\Exception\UnknownOpException;
use MagicLink\Tests\Support\Daemon;
use MagicLink\Tests\Support\DaemonTestCase;
use MagicLink\Tests\Support\FakeServers;

/** The exception hierarchy, and how the client treats replies that are not the protocol. */
final class ErrorsTest extends DaemonTestCase
{
    use FakeServers;

    public function testHierarchy(): void
    {
        $codes = [
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
        foreach ($codes as $code => $class) {
            $e = ServerException::fromWire($code, 'm', false, []);
            self::assertSame($class, \get_class($e), $code);
            self::assertInstanceOf(ServerException::class, $e);
            self::assertInstanceOf(MagicLinkException::class, $e);
            self::assertInstanceOf(\RuntimeException::class, $e);
            self::assertNotInstanceOf(TransportException::class, $e);
        }
        $future = ServerException::fromWire('quota_exceeded', 'm', true, []);
        self::assertSame(ServerException::class, \get_class($future));

        foreach ([ConnectionException::class, TimeoutException::class, ProtocolException::class] as $class) {
            $e = new $class('m');
            self::assertInstanceOf(TransportException::class, $e);
            self::assertInstanceOf(\RuntimeException::class, $e);
            self::assertInstanceOf(MagicLinkException::class, $e);
            self::assertNotInstanceOf(ServerException::class, $e);
        }
        self::assertInstanceOf(MagicLinkException::class, new InvalidArgumentException('m'));

        $limited = ServerException::fromWire('rate_limited', 'm', true, ['retry_after_s' => 42]);
        self::assertInstanceOf(RateLimitedException::class, $limited);
        self::assertSame(42, $limited->getRetryAfter());
        $token = ServerException::fromWire('invalid_token', 'm', false, ['reason' => 'expired']);
        self::assertInstanceOf(InvalidTokenException::class, $token);
        self::assertSame('expired', $token->getReason());
        $full = ServerException::fromWire('unavailable', 'm', true, ['reason' => 'mail_queue_full']);
        self::assertInstanceOf(UnavailableException::class, $full);
        self::assertSame('mail_queue_full', $full->getReason());
        $code = ServerException::fromWire('invalid_code', 'm', false, ['attempts_left' => 1]);
        self::assertInstanceOf(InvalidCodeException::class, $code);
        self::assertSame(1, $code->getAttemptsLeft());
        $confirm = ServerException::fromWire('confirmation_required', 'm', false, ['email_masked' => 'a***@example.com', 'requested_at' => 1764169400]);
        self::assertInstanceOf(ConfirmationRequiredException::class, $confirm);
        self::assertSame('a***@example.com', $confirm->getEmailMasked());
        self::assertSame(1764169400, $confirm->getRequestedAt());
    }

    public function testUnknownOpFromTheRealDaemon(): void
    {
        $client = new Client(self::$daemon->socket);
        try {
            $client->call('frobnicate', ['x' => 1]);
            self::fail('unknown op accepted');
        } catch (UnknownOpException $e) {
            self::assertSame('frobnicate', $e->getUnknownOp());
            self::assertFalse($e->isRetryable());
        }
        // The connection is still good.
        self::assertSame('magiclinkd', $client->hello()->server);
        self::assertSame(1, $client->transport()->connectCount());
    }

    public function testUnknownFutureCodeIsAPlainServerException(): void
    {
        $fake = $this->fake('future-error');
        $client = new Client($fake->socket);
        try {
            $client->hello();
            self::fail('error reply not thrown');
        } catch (ServerException $e) {
            self::assertSame(ServerException::class, \get_class($e));
            self::assertSame('quota_exceeded', $e->getErrorCode());
            self::assertTrue($e->isRetryable());
            self::assertSame(['quota' => 3], $e->getDetails());
        }
    }

    public function testRequestTooLargeThenTheNextCallReconnects(): void
    {
        $client = new Client(self::$daemon->socket);
        try {
            $client->call('hello', ['padding' => str_repeat('x', 70_000)]);
            self::fail('an oversized line was accepted');
        } catch (RequestTooLargeException $e) {
            self::assertSame(65536, $e->getMaxLineBytes());
        }
        self::assertFalse($client->transport()->isConnected());
        self::assertSame('magiclinkd', $client->hello()->server);
        self::assertSame(2, $client->transport()->connectCount());
    }

    public function testNoSocketIsAConnectionError(): void
    {
        $dir = Daemon::makeDir();
        try {
            $client = new Client($dir . '/missing.sock'); // lazy: no error yet
            try {
                $client->hello();
                self::fail('connected to a missing socket');
            } catch (ConnectionException $e) {
                self::assertStringContainsString($dir . '/missing.sock', $e->getMessage());
                self::assertFalse($e->isOutcomeUnknown());
            }
        } finally {
            Daemon::removeTree($dir);
        }
    }

    public function testStaleSocketFileIsAConnectionError(): void
    {
        $dir = Daemon::makeDir();
        try {
            $server = stream_socket_server('unix://' . $dir . '/stale.sock');
            fclose($server); // the file stays, nobody listens
            self::assertFileExists($dir . '/stale.sock');
            $this->expectException(ConnectionException::class);
            $this->expectExceptionMessage('refused');
            (new Client($dir . '/stale.sock'))->start('x@example.com');
        } finally {
            Daemon::removeTree($dir);
        }
    }

    public function testReplyThatIsNotJsonIsAProtocolErrorAndDropsTheConnection(): void
    {
        $fake = $this->fake('garbage');
        $client = new Client($fake->socket);
        try {
            $client->hello();
            self::fail('garbage accepted');
        } catch (ProtocolException $e) {
            self::assertStringContainsString('not valid JSON', $e->getMessage());
        }
        self::assertFalse($client->transport()->isConnected());
    }

    public function testReplyThatIsNotAnObject(): void
    {
        $fake = $this->fake('not-an-object');
        $this->expectException(ProtocolException::class);
        (new Client($fake->socket))->hello();
    }

    public function testWrongIdIsAProtocolErrorAndTheNextCallUsesANewConnection(): void
    {
        $fake = $this->fake('wrong-id');
        $client = new Client($fake->socket);
        for ($i = 1; $i <= 2; $i++) {
            try {
                $client->call('logout', ['session' => 'x']);
                self::fail('a reply with the wrong id was accepted');
            } catch (ProtocolException $e) {
                self::assertStringContainsString('wrong id', $e->getMessage());
            }
            self::assertSame($i, $client->transport()->connectCount());
            self::assertFalse($client->transport()->isConnected());
        }
    }

    public function testOversizedReplyIsAProtocolError(): void
    {
        $fake = $this->fake('huge');
        $client = new Client($fake->socket, maxReplyBytes: 1_048_576);
        try {
            $client->hello();
            self::fail('a 2 MiB reply line was accepted');
        } catch (ProtocolException $e) {
            self::assertStringContainsString('longer than 1048576 bytes', $e->getMessage());
        }
        self::assertFalse($client->transport()->isConnected());
    }

    public function testCarriageReturnBeforeTheLineFeedIsAccepted(): void
    {
        $fake = $this->fake('crlf');
        self::assertSame('fake-conn-1', (new Client($fake->socket))->hello()->version);
    }

    public function testResultMissingAMemberIsAProtocolError(): void
    {
        $fake = $this->fake('missing-member');
        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('hello result.version is missing or not a string');
        (new Client($fake->socket))->hello();
    }

    public function testListAsParamsIsRefusedBeforeSending(): void
    {
        $fake = $this->fake('echo');
        $client = new Client($fake->socket);
        try {
            $client->call('hello', ['a', 'b']);
            self::fail('a list was sent as params');
        } catch (InvalidArgumentException $e) {
            self::assertInstanceOf(MagicLinkException::class, $e);
        }
        self::assertSame(0, $client->transport()->connectCount());
        self::assertSame([], $fake->events());
    }

    public function testBadConstructorArguments(): void
    {
        foreach ([['readTimeout' => 0.0], ['connectTimeout' => -1.0], ['readTimeout' => INF], ['maxReplyBytes' => 0]] as $args) {
            try {
                new Client('/tmp/x.sock', ...$args);
                self::fail('accepted ' . json_encode($args));
            } catch (InvalidArgumentException) {
                $this->addToAssertionCount(1);
            }
        }
    }

    public function testOnlyGivenParamsAreSent(): void
    {
        // A null redirect must be left out. The daemon would take "redirect": null as absent
        // too, so look at the line itself: a listening socket nobody answers on.
        $dir = Daemon::makeDir();
        try {
            $path = $dir . '/s.sock';
            $server = stream_socket_server('unix://' . $path);
            $client = new Client($path, readTimeout: 0.2);
            try {
                $client->start('x@example.com', ip: '192.0.2.1');
            } catch (TimeoutException) {
                // nobody answers: we only want the line
            }
            $conn = stream_socket_accept($server, 1);
            $line = fgets($conn);
            $request = json_decode($line, true);
            self::assertSame('start', $request['op']);
            self::assertSame(['email' => 'x@example.com', 'ip' => '192.0.2.1'], $request['params']);
            self::assertIsInt($request['id']);
            fclose($conn);
            fclose($server);
        } finally {
            Daemon::removeTree($dir);
        }
    }
}
