/* The attachment frame's header, read and written; see attachment-frame.h. */
#include "attachment-frame.h"

#include <stdbool.h>

void vfm_frame_reader_init(struct vfm_frame_reader *reader)
{
    reader->have = 0;
    reader->length = 0;
}

/* RFC 8259's whitespace: what may stand between texts, and between a frame and its text. */
static bool is_json_space(uint8_t byte)
{
    return byte == ' ' || byte == '\t' || byte == '\n' || byte == '\r';
}

enum vfm_frame_status vfm_frame_reader_feed(struct vfm_frame_reader *reader, const uint8_t *bytes, size_t n,
                                            size_t *used)
{
    size_t i = 0;

    if (reader->have == 0) {
        while (i < n && is_json_space(bytes[i]))
            i++;
        if (i == n) {
            *used = i;
            return VFM_FRAME_MORE;
        }
        if (bytes[i] != VFM_FRAME_MARKER) {
            *used = i;
            return VFM_FRAME_TEXT;
        }
        reader->have = 1;
        i++;
    }
    while (i < n && reader->have < VFM_FRAME_HEADER_BYTES) {
        reader->length = reader->length << 8 | bytes[i++];
        reader->have++;
    }
    *used = i;
    return reader->have == VFM_FRAME_HEADER_BYTES ? VFM_FRAME_HEADER : VFM_FRAME_MORE;
}

void vfm_frame_header(uint8_t out[VFM_FRAME_HEADER_BYTES], uint32_t length)
{
    out[0] = VFM_FRAME_MARKER;
    out[1] = (uint8_t)(length >> 24);
    out[2] = (uint8_t)(length >> 16);
    out[3] = (uint8_t)(length >> 8);
    out[4] = (uint8_t)length;
}
