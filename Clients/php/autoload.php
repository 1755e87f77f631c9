<?php

// PSR-4 autoloader for using the client without Composer:
//     require '/path/to/Clients/php/autoload.php';
// With Composer, its own autoloader does the same from composer.json.

declare(strict_types=1);

spl_autoload_register(static function (string $class): void {
    if (str_starts_with($class, 'MagicLink\\')) {
        $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, \strlen('MagicLink\\'))) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
