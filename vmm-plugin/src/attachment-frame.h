/*
 * The agent's binary attachment frame, opted into per connection with
 * rpc.enableAttachments: one 0x00 byte, a 4-byte big-endian length N, then
 * exactly N raw bytes. A frame stands between JSON texts and belongs to the
 * text after it (whitespace may come between); that text writes the value
 * as {"attachment": N} where it would have carried base64. 0x00 can never
 * start a JSON text, which is what lets one byte tell the two apart.
 *
 * Only the 5-byte header is parsed here, incrementally, so that it may
 * arrive split anywhere; the N bytes themselves are the connection's to
 * move (connection.c receives them straight into the caller's buffer).
 */
#ifndef VFM_ATTACHMENT_FRAME_H
#define VFM_ATTACHMENT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define VFM_FRAME_MARKER 0x00
#define VFM_FRAME_HEADER_BYTES 5

/* What vfm_frame_reader_feed found. */
enum vfm_frame_status {
    VFM_FRAME_MORE,     /* every byte given was used (whitespace, part of a header): feed more */
    VFM_FRAME_TEXT,     /* a JSON text starts at bytes[*used]: no frame before it */
    VFM_FRAME_HEADER,   /* a whole header ends at bytes[*used]: its length is in reader->length */
};

struct vfm_frame_reader {
    unsigned have;      /* header bytes seen so far, 0..VFM_FRAME_HEADER_BYTES */
    uint32_t length;    /* the frame's length once the header is whole */
};

/* Ready for what comes before one JSON text. */
void vfm_frame_reader_init(struct vfm_frame_reader *reader);

/*
 * Looks at bytes[0..n) (n may be 0): skips JSON whitespace before a header
 * or a text, and takes header bytes as they come. *used is how many bytes
 * it took; it never looks past a header's last byte, so the frame's data
 * that follows in the same buffer stays for the caller.
 */
enum vfm_frame_status vfm_frame_reader_feed(struct vfm_frame_reader *reader, const uint8_t *bytes, size_t n,
                                            size_t *used);

/* The header of a frame of `length` bytes. */
void vfm_frame_header(uint8_t out[VFM_FRAME_HEADER_BYTES], uint32_t length);

#endif
