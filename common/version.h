/* SPDX-License-Identifier: ISC */
#ifndef SMTPGATE_VERSION_H
#define SMTPGATE_VERSION_H
#define SMTPGATE_VERSION "0.1.0"
#endif
