<?php

// A scripted stand-in for magiclinkd, for what the real daemon cannot be made to do on cue:
// never answer, answer garbage, answer late, break the connection after reading a request,
// or never accept. Usage: php fake-server.php <mode> <socket path> <events file>
//
// backlog-full and backlog-slow listen with a queue of one and never answer; backlog-slow
// accepts one connection per line on its stdin.
//
// Prints "ready" on stdout once listening. Appends "connect <n>" and "request <n> <op>" lines to
// the events file (mode record: each followed by "params <the params as JSON, or ->"). Replies that succeed look like the real daemon's.

declare(strict_types=1);

[, $mode, $path, $eventsFile] = $argv;

@unlink($path);
$context = stream_context_create(['socket' => ['backlog' => str_starts_with($mode, 'backlog-') ? 0 : 16]]);
$server = stream_socket_server('unix://' . $path, $errno, $errstr, STREAM_SERVER_BIND | STREAM_SERVER_LISTEN, $context);
if ($server === false) {
    fwrite(STDERR, "fake-server: cannot listen on {$path}: {$errstr}\n");
    exit(1);
}

$event = static function (string $line) use ($eventsFile): void {
    file_put_contents($eventsFile, $line . "\n", FILE_APPEND | LOCK_EX);
};

/** A reply like the daemon's for a request line; $tag marks which connection answered. */
$goodReply = static function (string $line, int $conn): string {
    $request = json_decode($line, true);
    $id = $request['id'] ?? null;
    $op = $request['op'] ?? '';
    $result = match ($op) {
        'hello' => ['server' => 'magiclinkd', 'version' => 'fake-conn-' . $conn, 'protocol' => 1, 'ops' => ['hello', 'start', 'session'], 'max_line_bytes' => 65536],
        'start' => ['expires_at' => 2_000_000_000, 'flow' => str_repeat('F', 43)],
        'session' => ['user' => ['id' => '00000000-0000-4000-8000-000000000001', 'email' => 'conn' . $conn . '@example.com'], 'expires_at' => 2_000_000_000, 'idle_expires_at' => 1_900_000_000],
        'peek' => ['valid' => false, 'reason' => 'unknown', 'flow_matches' => false],
        default => [],
    };
    return json_encode(['id' => $id, 'ok' => true, 'result' => (object) $result]) . "\n";
};

fwrite(STDOUT, "ready\n");
fflush(STDOUT);

if ($mode === 'backlog-full') {
    // Listen, never accept: once the queue is full, connect() fails with EAGAIN.
    while (true) {
        sleep(60);
    }
}
if ($mode === 'backlog-slow') {
    // Accept one connection (making room in the queue) when stdin gets a line; never answer.
    $held = [];
    while (($line = fgets(STDIN)) !== false) {
        $held[] = stream_socket_accept($server, 5);
        $event('accepted');
    }
    exit(0);
}

/** @var array<int, array{stream: resource, n: int, buffer: string}> $clients */
$clients = [];
/** @var list<array{at: float, key: int, data: string}> $pending replies to send later */
$pending = [];
$connections = 0;

while (true) {
    $read = [$server];
    foreach ($clients as $client) {
        $read[] = $client['stream'];
    }
    $write = null;
    $except = null;
    $timeout = 1_000_000;
    if ($pending !== []) {
        $next = min(array_column($pending, 'at'));
        $timeout = max(0, (int) (($next - microtime(true)) * 1e6));
    }
    if (@stream_select($read, $write, $except, intdiv($timeout, 1_000_000), $timeout % 1_000_000) === false) {
        continue;
    }

    foreach ($pending as $i => $reply) {
        if ($reply['at'] <= microtime(true)) {
            if (isset($clients[$reply['key']]) && @fwrite($clients[$reply['key']]['stream'], $reply['data'])) {
                $event('late reply sent');
            } else {
                $event('late reply dropped (connection closed)');
            }
            unset($pending[$i]);
        }
    }

    foreach ($read as $stream) {
        if ($stream === $server) {
            $accepted = @stream_socket_accept($server, 0);
            if ($accepted !== false) {
                $connections++;
                $clients[(int) $accepted] = ['stream' => $accepted, 'n' => $connections, 'buffer' => ''];
                $event('connect ' . $connections);
            }
            continue;
        }
        $key = (int) $stream;
        $chunk = @fread($stream, 65536);
        if ($chunk === '' || $chunk === false) {
            if (feof($stream)) {
                fclose($stream);
                unset($clients[$key]);
            }
            continue;
        }
        $clients[$key]['buffer'] .= $chunk;
        while (($end = strpos($clients[$key]['buffer'], "\n")) !== false) {
            $line = substr($clients[$key]['buffer'], 0, $end);
            $clients[$key]['buffer'] = substr($clients[$key]['buffer'], $end + 1);
            $n = $clients[$key]['n'];
            $request = json_decode($line, true);
            $event('request ' . $n . ' ' . ($request['op'] ?? '?'));
            $id = $request['id'] ?? null;

            switch ($mode) {
                case 'silent':
                    break;
                case 'garbage':
                    // Looks like the start of a reply holding a session, then is cut: not JSON.
                    fwrite($stream, '{"id":' . json_encode($id) . ',"ok":true,"result":{"session":"SECRETsecretSECRETsecretSECRETsecret1234567"' . "\n");
                    break;
                case 'not-an-object':
                    fwrite($stream, "[1,2,3]\n");
                    break;
                case 'wrong-id':
                    fwrite($stream, json_encode(['id' => \is_int($id) ? $id + 1000 : 'x', 'ok' => true, 'result' => new stdClass()]) . "\n");
                    break;
                case 'huge':
                    fwrite($stream, str_repeat('x', 2 * 1024 * 1024) . "\n");
                    break;
                case 'crlf':
                    fwrite($stream, rtrim($goodReply($line, $n), "\n") . "\r\n");
                    break;
                case 'missing-member':
                    fwrite($stream, json_encode(['id' => $id, 'ok' => true, 'result' => ['server' => 'magiclinkd']]) . "\n");
                    break;
                case 'future-error':
                    fwrite($stream, json_encode(['id' => $id, 'ok' => false, 'error' => [
                        'code' => 'quota_exceeded', 'message' => 'A code from a newer daemon.', 'retryable' => true, 'details' => ['quota' => 3],
                    ]]) . "\n");
                    break;
                case 'late':
                    // The first connection answers after 1.5 s; later ones at once.
                    if ($n === 1) {
                        $pending[] = ['at' => microtime(true) + 1.5, 'key' => $key, 'data' => $goodReply($line, $n)];
                    } else {
                        fwrite($stream, $goodReply($line, $n));
                    }
                    break;
                case 'drop-first':
                    // The first connection reads one request and closes without a reply.
                    if ($n === 1) {
                        fclose($stream);
                        unset($clients[$key]);
                        break 2;
                    }
                    fwrite($stream, $goodReply($line, $n));
                    break;
                case 'record':
                    // Notes the params as sent ("-" when absent), then answers as usual.
                    $raw = json_decode($line);
                    $event('params ' . ($raw instanceof stdClass && property_exists($raw, 'params') ? json_encode($raw->params) : '-'));
                    fwrite($stream, $goodReply($line, $n));
                    break;
                case 'drop-all':
                    fclose($stream);
                    unset($clients[$key]);
                    break 2;
                default:
                    fwrite($stream, $goodReply($line, $n));
            }
        }
    }
}
