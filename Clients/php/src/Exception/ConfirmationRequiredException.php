<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * `confirmation_required`: the link was opened without the flow of the browser that asked for it
 * (another device, or a link someone else requested and sent: login CSRF). Nothing happened and
 * the token still works. Ask the user ("Sign in as a***@example.com, requested at 14:03?") and
 * call callback() again with confirm: true.
 */
class ConfirmationRequiredException extends ServerException
{
    /** The address, masked (details.email_masked), e.g. "a***@example.com". */
    public function getEmailMasked(): ?string
    {
        $email = $this->getDetails()['email_masked'] ?? null;
        return \is_string($email) ? $email : null;
    }

    /** When start() was called, Unix seconds (details.requested_at). */
    public function getRequestedAt(): ?int
    {
        $at = $this->getDetails()['requested_at'] ?? null;
        return \is_int($at) ? $at : null;
    }
}
