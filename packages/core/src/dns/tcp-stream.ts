// Reassembles DNS messages from a TCP byte stream: each message is preceded by its length as
// two bytes (RFC 1035 4.2.2). Chunks may hold several messages, or split one anywhere.

/** Largest message a TCP stream can carry (the length prefix is 16 bits). */
export const MAX_TCP_DNS_MESSAGE = 0xffff;

export class DnsTcpStream {
  private buffer: Uint8Array = new Uint8Array(0);

  /** Appends a chunk and returns every message it completed, in stream order. */
  feed(chunk: Uint8Array): Uint8Array[] {
    if (chunk.length > 0) {
      const joined = new Uint8Array(this.buffer.length + chunk.length);
      joined.set(this.buffer, 0);
      joined.set(chunk, this.buffer.length);
      this.buffer = joined;
    }
    const messages: Uint8Array[] = [];
    let at = 0;
    while (this.buffer.length - at >= 2) {
      const length = ((this.buffer[at] ?? 0) << 8) | (this.buffer[at + 1] ?? 0);
      if (this.buffer.length - at - 2 < length) break;
      messages.push(this.buffer.slice(at + 2, at + 2 + length));
      at += 2 + length;
    }
    if (at > 0) this.buffer = this.buffer.slice(at);
    return messages;
  }

  /** Bytes received that do not yet form a whole message. */
  get pending(): number {
    return this.buffer.length;
  }
}
