/* The md v1.0 superblock of a member file (SPEC §2).
 *
 * The on-disk layout is the kernel's struct mdp_superblock_1 from
 * <linux/raid/md_p.h>; this module is the only place that encodes or
 * decodes it.  struct md_sb is its host-endian, decoded form.
 */
#ifndef MDFUSE_SUPERBLOCK_H
#define MDFUSE_SUPERBLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SB_MAGIC 0xa92b4efc     /* md's MD_SB_MAGIC */
#define SB_BLOCK_SIZE 4096
#define SB_MAX_DEV 384          /* as md: more roles do not fit sanely */
#define SB_ROLE_FAULTY 0xfffe
#define SB_ROLE_SPARE 0xffff
#define SB_RESYNC_CLEAN UINT64_MAX      /* md's MaxSector: in sync */
/* dev_flags (md's devflags byte): this member is written like the others
 * but read only when no other current member can serve (WriteMostly1). */
#define SB_DEVFLAG_WRITE_MOSTLY 0x01

struct md_sb {
  uint8_t set_uuid[16];
  char set_name[33];            /* NUL-terminated copy of the 32 bytes */
  uint64_t ctime, utime;        /* seconds */
  uint32_t level;
  uint32_t raid_disks;
  uint64_t size;                /* volume size, sectors */
  uint64_t data_offset, data_size, super_offset;        /* sectors */
  uint32_t dev_number;
  uint8_t device_uuid[16];
  uint8_t devflags;             /* this member's own: SB_DEVFLAG_* */
  uint64_t events;
  uint64_t resync_offset;       /* sectors; SB_RESYNC_CLEAN when clean */
  /* A member being recovered (md's MD_FEATURE_RECOVERY_OFFSET): its data
   * below recovery_offset (sectors) is copied, above it is not.
   * recovery_bitmap: the recovery copies only the chunks the bitmap marks
   * (MD_FEATURE_RECOVERY_BITMAP), and recovery_offset says nothing of its
   * data.  Never current while recovering. */
  bool recovering;
  bool recovery_bitmap;
  uint64_t recovery_offset;
  uint32_t max_dev;
  uint32_t sb_csum;              /* as stored (decode only) */
  uint16_t dev_roles[SB_MAX_DEV];
};

enum sb_status {
  SB_VALID = 0,
  SB_NO_MAGIC,                  /* not an md superblock at all */
  SB_BAD_CHECKSUM,              /* magic good, checksum bad: torn */
  SB_UNSUPPORTED,               /* md, but not a v1.0 raid1 we can serve */
};

/* Sector where a 1.0 superblock lives in a file of FILE_SIZE bytes. */
uint64_t sb_super_offset_for (uint64_t file_size);
/* Largest volume (bytes, multiple of 4096) a member of FILE_SIZE holds. */
uint64_t sb_max_volume_for (uint64_t file_size);
/* Smallest member file (bytes, multiple of 4096) for a volume of V bytes. */
uint64_t sb_member_size_for (uint64_t volume_bytes);

/* The md checksum of an encoded block (SPEC §2). */
uint32_t sb_checksum (const uint8_t block[SB_BLOCK_SIZE]);

/* md's feature_map for SB. */
uint32_t sb_feature_map (const struct md_sb *sb);

/* Encode SB into a zeroed 4 KiB BLOCK with a correct checksum. */
void sb_encode (const struct md_sb *sb, uint8_t block[SB_BLOCK_SIZE]);

/* Decode BLOCK.  Fills SB as far as it can even when the checksum is bad
 * (so the caller can see a torn superblock's uuid).  On anything but
 * SB_VALID, WHY gets a short description ("checksum 0x.. != 0x..").  */
enum sb_status sb_decode (const uint8_t block[SB_BLOCK_SIZE],
                          struct md_sb *sb, char *why, size_t whylen);

/* The role SB gives its own device: a slot number, SB_ROLE_FAULTY, or
 * SB_ROLE_SPARE (also when dev_number is past max_dev). */
uint16_t sb_own_role (const struct md_sb *sb);

/* The array state as mdadm --examine names it: "clean" when
 * resync_offset is SB_RESYNC_CLEAN, "active" otherwise. */
const char *sb_state_name (const struct md_sb *sb);

/* "xxxxxxxx:xxxxxxxx:xxxxxxxx:xxxxxxxx", as mdadm prints uuids. */
void sb_format_uuid (const uint8_t uuid[16], char out[36]);

#endif
